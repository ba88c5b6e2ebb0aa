"""`rag dev`'s LLM server: llama-cpp-python's OpenAI-compatible server (same arguments), its threads chosen per decode
(`llama_threads`). Run as `python -m rag_assets.llm.llama_server --model ... --port ...`."""

from rag_assets.llm.llama_threads import install_adaptive_threads


def main() -> None:
    install_adaptive_threads(limit_spin=True)  # before llama_cpp loads libgomp: its spin limit is read then
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
