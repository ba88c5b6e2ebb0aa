"""Token-aware, Markdown-aware chunking sized by the embedding model's own tokenizer.

Each chunk carries its document's title as a first line unless it already opens with it (context
for both dense and BM25 retrieval), is at most `max_tokens` model tokens including special tokens, and is identified by a
content hash of everything stored with it (source, document, text, position, heading path, link,
sensitivity, chunker settings).
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl
from semantic_text_splitter import MarkdownSplitter
from tokenizers import Tokenizer

from rag_assets.hashing import sha256_hex, text_hash
from rag_assets.settings import available_cores

CHUNK_SCHEMA: dict[str, pl.DataType] = {
    "chunk_id": pl.String(),
    "doc_id": pl.String(),
    "content_hash": pl.String(),
    "source": pl.String(),
    "title": pl.String(),
    "link": pl.String(),
    "text": pl.String(),
    "n_tokens": pl.Int32(),
    "heading_path": pl.String(),
    "position": pl.Int32(),
    "text_hash": pl.String(),
    "sensitive": pl.Boolean(),
    "chunker": pl.String(),
}

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)
MAX_PREFIX_SHARE = 4  # a title may take at most 1/4 of a chunk's tokens
BIG_VOCABULARY = 100_000  # tokenizers larger than this get the frugal splitter handling below
CAPACITY_STEP = 16


@dataclass(frozen=True)
class ChunkSettings:
    """`max_tokens` counts the model's special tokens too; `overlap` is in tokens."""

    max_tokens: int = 256
    overlap: int = 32

    @property
    def settings_id(self) -> str:
        return f"md-t{self.max_tokens}-o{self.overlap}"


def heading_spans(text: str) -> list[tuple[int, int, str]]:
    """(char offset, level, heading) for Markdown ATX headings outside fenced code blocks."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    spans = []
    for m in _HEADING.finditer(text):
        inside_code = sum(1 for f in fences if f < m.start()) % 2 == 1
        if not inside_code:
            spans.append((m.start(), len(m.group(1)), m.group(2).strip()))
    return spans


def heading_path_at(spans: list[tuple[int, int, str]], offset: int) -> str:
    """The heading trail in force at `offset` ("A > B > C")."""
    stack: list[tuple[int, str]] = []
    for start, level, title in spans:
        if start > offset:
            break
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
    return " > ".join(title for _, title in stack)


def _clean_title(title: str) -> str:
    return " ".join(title.split())


def _starts_with_title(body: str, title: str) -> bool:
    """A chunk that already opens with the title (e.g. `# Title`) needs no title line."""
    return title in body.lstrip()[: len(title) + 8]


class Chunker:
    """Splits document frames into chunk frames. Build once; reuse for many documents.

    Documents are split in groups, one per splitter capacity (title length); with `threads` > 1 the groups run
    concurrently in threads. The splitting and the token counts run in Rust without the GIL, so one group's
    splitting overlaps another's splitter build and title lines; the output does not depend on `threads`.
    """

    def __init__(self, tokenizer: Tokenizer, settings: ChunkSettings, model_max_tokens: int | None = None,
                 threads: int | None = None):
        self.settings = settings
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.limit = min(settings.max_tokens, model_max_tokens or settings.max_tokens)
        self.n_special = self.tokenizer.num_special_tokens_to_add(False)
        if self.limit - self.n_special < 16:
            raise ValueError(f"max_tokens={settings.max_tokens} leaves no room for text")
        self._splitters: dict[int, MarkdownSplitter] = {}  # one per capacity, i.e. per title length in tokens
        self._json = self.tokenizer.to_str()  # serialised once, not once per splitter
        # A splitter holds its own copy of the tokenizer: cheap for a 30k vocabulary, ~290 MB and seconds to build
        # for a 250k one (multilingual-e5). For those, capacities are rounded down to a step (chunks at most a
        # step below the limit) and splitters are not kept, so one lives at a time.
        self._big_vocab = self.tokenizer.get_vocab_size() > BIG_VOCABULARY
        self._step = CAPACITY_STEP if self._big_vocab else 1
        # A big-vocabulary splitter is large: one at a time, so no concurrent groups for those.
        self.threads = 1 if self._big_vocab else max(1, threads or available_cores())

    def _splitter(self, capacity: int) -> MarkdownSplitter:
        if capacity in self._splitters:
            return self._splitters[capacity]
        splitter = MarkdownSplitter.from_huggingface_tokenizer_str(self._json, capacity, overlap=min(self.settings.overlap, capacity // 2))
        if not self._big_vocab:
            self._splitters[capacity] = splitter
        return splitter

    def _prefixes(self, titles: list[str]) -> tuple[list[str], list[int]]:
        prefixes = [_clean_title(t) for t in titles]
        encoded = self.tokenizer.encode_batch([p for p in prefixes], add_special_tokens=False)
        budget = (self.limit - self.n_special) // MAX_PREFIX_SHARE
        costs = []
        for i, enc in enumerate(encoded):
            cost = len(enc.ids) + 1 if prefixes[i] else 0  # +1: the blank line is free, keep a token spare
            if cost > budget:
                prefixes[i], cost = "", 0
            costs.append(cost)
        return prefixes, costs

    def chunk_frame(self, documents: pl.DataFrame, previous: pl.DataFrame | None = None) -> pl.DataFrame:
        """Chunks for every loaded document (rows with `error` set or no text are skipped).

        With `previous` (this chunker's last output for the same documents), a document whose
        content hash is unchanged keeps its chunks as they were, so re-ingestion only splits what changed.
        """
        docs = documents.filter(pl.col("error").is_null() & (pl.col("text").str.strip_chars() != ""))
        if docs.height == 0:
            return pl.DataFrame(schema=CHUNK_SCHEMA)
        reused = self._reusable(docs, previous)
        if reused.height:
            docs = docs.join(reused.select("doc_id").unique(), on="doc_id", how="anti")
        fresh = self._split(docs) if docs.height else pl.DataFrame(schema=CHUNK_SCHEMA)
        frame = pl.concat([reused, fresh]) if reused.height else fresh
        order = documents.select("doc_id").with_row_index("_doc_order")
        frame = frame.join(order, on="doc_id", how="left").sort("_doc_order", "position", maintain_order=True).drop("_doc_order")
        return frame.unique(subset="chunk_id", keep="first", maintain_order=True)

    def _reusable(self, docs: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
        """Previous chunks of documents whose content, title, link and sensitivity are unchanged."""
        if previous is None or previous.height == 0 or set(previous.columns) != set(CHUNK_SCHEMA):
            return pl.DataFrame(schema=CHUNK_SCHEMA)
        keys = ["doc_id", "content_hash", "link", "sensitive"]
        same = previous.filter(pl.col("chunker") == self.settings.settings_id).join(docs.select(keys), on=keys, how="semi")
        return same.select(list(CHUNK_SCHEMA)).cast(CHUNK_SCHEMA)

    def _split_group(self, capacity: int, idxs: list[int], texts: list[str], prefixes: list[str]) -> list[list[tuple[int, str, int]]]:
        """(offset, chunk text with its title line, tokens with special tokens) per chunk, per document in `idxs`."""
        results = self._splitter(capacity).chunk_all_indices([texts[i] for i in idxs])
        chunks = []
        for i, pieces in zip(idxs, results):
            prefix = prefixes[i]
            chunks.append([(offset, f"{prefix}\n\n{body}" if prefix and not _starts_with_title(body, prefix) else body)
                           for offset, body in pieces])
        counts = iter(self.count_tokens([text for doc in chunks for _, text in doc]))
        return [[(offset, text, next(counts)) for offset, text in doc] for doc in chunks]

    def _split(self, docs: pl.DataFrame) -> pl.DataFrame:
        titles, texts = docs["title"].to_list(), docs["text"].to_list()
        prefixes, costs = self._prefixes(titles)

        by_capacity: dict[int, list[int]] = defaultdict(list)
        for i, cost in enumerate(costs):
            capacity = self.limit - self.n_special - cost
            by_capacity[capacity - capacity % self._step].append(i)
        # Biggest groups first, so the small ones fill the gaps at the end.
        groups = sorted(by_capacity.items(), key=lambda item: -sum(len(texts[i]) for i in item[1]))
        chunks: list[list[tuple[int, str, int]]] = [[] for _ in range(docs.height)]
        with ThreadPoolExecutor(max_workers=min(self.threads, len(groups))) as pool:
            done = pool.map(lambda group: self._split_group(group[0], group[1], texts, prefixes), groups)
            for (_, idxs), result in zip(groups, done):
                for i, doc_chunks in zip(idxs, result):
                    chunks[i] = doc_chunks

        rows: dict[str, list] = {k: [] for k in CHUNK_SCHEMA}
        settings_id = self.settings.settings_id
        for i, doc in enumerate(docs.iter_rows(named=True)):
            spans = heading_spans(texts[i]) if "#" in texts[i] else []
            for position, (offset, text, n_tokens) in enumerate(chunks[i]):
                heading_path = heading_path_at(spans, offset + 1) if spans else ""
                # Everything stored with the chunk is in its id, so a changed row is a new id (re-upserted;
                # the embedding is still a cache hit by text hash).
                rows["chunk_id"].append(
                    sha256_hex(doc["source"], doc["doc_id"], text, settings_id, str(position), heading_path,
                               doc["link"], str(doc["sensitive"]), doc["title"], length=32)
                )
                rows["doc_id"].append(doc["doc_id"])
                rows["content_hash"].append(doc["content_hash"])
                rows["source"].append(doc["source"])
                rows["title"].append(doc["title"])
                rows["link"].append(doc["link"])
                rows["text"].append(text)
                rows["n_tokens"].append(n_tokens)
                rows["heading_path"].append(heading_path)
                rows["position"].append(position)
                rows["text_hash"].append(text_hash(text))
                rows["sensitive"].append(doc["sensitive"])
                rows["chunker"].append(settings_id)
        return pl.DataFrame(rows, schema=CHUNK_SCHEMA)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens per text, special tokens included (`encode_batch_fast`: the same tokens, no character offsets)."""
        return [len(e) for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=True)]
