"""`rag dev`'s LLM server: llama-cpp-python's OpenAI-compatible server (same arguments), its threads chosen per decode
(`llama_threads`) and `--draft_model prompt-lookup-decoding` served by `lookup_decoding` (drafts from n-grams of two
tokens or more, logits kept only where the sampler reads them). Run as
`python -m rag_assets.llm.llama_server --model ... --port ...`."""

import sys

from rag_assets.llm.llama_threads import install_adaptive_threads
from rag_assets.llm.lookup_decoding import draft_model, install_lookup_decoding


def server_draft_model(num_pred_tokens: int = 10, **_: object):
    print(f"prompt-lookup decoding: up to {num_pred_tokens} draft tokens a decode, from n-grams of 2-4 tokens", file=sys.stderr, flush=True)
    return draft_model(num_pred_tokens)


def main() -> None:
    install_adaptive_threads(limit_spin=True)  # before llama_cpp loads libgomp: its spin limit is read then
    install_lookup_decoding()
    import llama_cpp.llama_speculative as speculative

    speculative.LlamaPromptLookupDecoding = server_draft_model  # what the server builds for `--draft_model prompt-lookup-decoding`
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
