"""Materializes only `index` for one source in a separate process (killed mid-way by a test)."""

import sys
from pathlib import Path

from rag_assets.ingest.index import index
from rag_assets.pipeline import Workspace

if __name__ == "__main__":
    root, uri, cache, source = sys.argv[1:5]
    Workspace(root=Path(root), cache_dir=Path(cache), milvus_uri=uri).materialize(source, selection=[index])
