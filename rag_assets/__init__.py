"""rag-assets: a Dagster code location that turns a team's documents into a RAG platform."""

import warnings

# Our assets use Dagster features still marked beta (data versions on outputs, the multi-to-single-dimension
# partition mapping of `embeddings` -> `embedding_model`, the evaluation sensor in the code server); say so once
# here, not on every import and CLI call. Only for warnings raised from this project's own modules.
warnings.filterwarnings("ignore", message=r".*is currently in beta", module=r"(rag_assets|sensors|resources|definitions)(\.|$)")
