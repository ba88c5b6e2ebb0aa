"""The answer prompt: sources numbered, titles once, their text cut to a budget by the sentences nearest the question;
and where the list of rewrites ends."""

import types

from rag_assets.inference.multi_query import (
    answer_prompt, best_sentences, fit_sources, query_terms, rephrase_prompt, rephrase_stops, rewrite_question,
)
from rag_assets.retrieval import Hit

FILLER = " ".join(f"Filler sentence number {i} says nothing useful here." for i in range(40))


def hit(title: str, body: str, n: int) -> Hit:
    return Hit(chunk_id=f"c{n}", doc_id=f"d{n}", source="docs", title=title, link=f"file:///{n}", text=f"{title}\n\n{body}",
               heading_path="", score=1.0 / n, sensitive=False)


def test_terms_drop_stopwords_and_short_words():
    assert query_terms("How are chunk IDs computed?", "What is a chunk id") == {"chunk", "ids", "computed"}


def test_best_sentences_keeps_the_matching_ones_in_order_and_marks_gaps():
    text = "Intro line here. " + FILLER + " Chunk ids are content hashes of the text. " + FILLER + " The end."
    cut = best_sentences(text, query_terms("How are chunk ids computed?"), 120)
    assert "Chunk ids are content hashes of the text." in cut and len(cut) <= 130
    assert " ... Chunk ids are" in cut  # sentences left out before it are marked
    assert best_sentences(FILLER + " Chunk ids are hashes.", query_terms("chunk ids"), 60).startswith("... Chunk ids")
    assert best_sentences("Short text.", {"x"}, 100) == "Short text."  # fits: whole


def test_one_overlong_sentence_is_cut_at_the_limit():
    cut = best_sentences("x" * 500, set(), 50)
    assert cut.endswith("...") and len(cut) <= 50


def test_short_sources_give_their_share_to_long_ones():
    texts = ["a" * 100, ("Long body sentence. " * 100).strip(), "c" * 50]
    fitted = fit_sources(texts, set(), 600)
    assert fitted[0] == texts[0] and fitted[2] == texts[2]  # whole
    assert 300 <= len(fitted[1]) <= 460  # 600 - 150 left for it


def test_prompt_numbers_every_source_with_its_title_once_within_the_budget():
    hits = [hit("Chunk ids", "Chunk ids are content hashes. " + FILLER, 1), hit("Sensors", FILLER + " Sensors add partitions.", 2)]
    system, prompt = answer_prompt("How are chunk ids computed?", hits, ["What is a chunk id made from?"], context_chars=800)
    assert "[1]" in system and prompt.startswith("Sources:\n[1] Chunk ids\n") and "\n\n[2] Sensors\n" in prompt
    assert prompt.count("Chunk ids\n") == 1  # the chunk's own title line is not repeated
    assert "Chunk ids are content hashes." in prompt and prompt.endswith("Question: How are chunk ids computed?\nAnswer:")
    assert len(prompt) < 800 + 200
    whole = answer_prompt("How are chunk ids computed?", hits, context_chars=0)[1]
    assert FILLER in whole and len(whole) > 2 * len(FILLER)


def test_the_budget_follows_the_model_that_answers_first(monkeypatch):
    """The prompt is cut for the local model only: the default policy without keys answers locally; a run pinned to
    OpenAI with a key answers there (and gets the chunks whole), unless the data is sensitive."""
    from resources.llm import LLMResource

    for env in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    assert LLMResource().first_provider("strong") == "local"
    pinned = LLMResource(provider="openai", openai_api_key="sk-test")
    assert pinned.first_provider("strong") == "openai"
    assert pinned.first_provider("strong", sensitive=True) == "local"


def test_the_answer_stops_at_a_source_that_was_not_given():
    from rag_assets.inference.multi_query import answer_stops

    stops = answer_stops(5)
    assert "[6]" in stops and "[5]" not in stops and "\nQuestion:" in stops
    answer = "Chunk ids are hashes [1], see also [5].\n\n[6] Architecture\n| documents | ..."
    first = min(answer.find(s) for s in stops if s in answer)
    assert answer[:first].strip() == "Chunk ids are hashes [1], see also [5]."


def test_a_negative_budget_is_refused_by_the_cli_and_the_run_config():
    import pytest

    from rag_assets.cli import build_parser
    from rag_assets.inference.ask_job import AskConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "q", "--context-chars", "-3"])
    assert build_parser().parse_args(["ask", "q", "--context-chars", "0"]).context_chars == 0
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        AskConfig(question="q", context_chars=-1)


def test_the_rewrites_stop_at_the_item_after_the_last():
    calls = []

    def complete(prompt, **kwargs):
        calls.append(kwargs)
        return types.SimpleNamespace(text=" Where do removed sources go?\n2. What is left after a source is deleted?\n3. x")

    assert rewrite_question(complete, "What happens when a source is removed?", 2, sensitive=False) == [
        "Where do removed sources go?", "What is left after a source is deleted?"]
    assert calls[0]["stop"] == rephrase_stops(2) and "\n3." in calls[0]["stop"] and calls[0]["tier"] == "fast"


def test_the_bundled_model_ends_its_list_of_rewrites_there():
    """Without that stop it numbered on to its token limit (96 tokens for 3 rewrites) for almost every question."""
    from rag_assets.llm import local_model
    from rag_assets.llm.providers import LocalProvider

    out = LocalProvider(local_model.LOCAL_MODEL).complete(rephrase_prompt("What happens when a source is removed?", 3), system="",
                                                          max_tokens=96, temperature=0.0, stop=rephrase_stops(3), timeout_s=120)
    assert 0 < out.tokens_out < 60 and "\n4." not in out.text


def test_rewrites_are_asked_of_any_model_but_the_bundled_one():
    """Left open, the number of rewrites is 3, or none when the bundled local model would write them (its rewrites
    made the sources worse on the demo labels); another local model or a remote one gets 3."""
    from rag_assets.inference.multi_query import REPHRASINGS, default_rephrasings
    from rag_assets.llm.providers import DEFAULT_MODELS

    bundled = DEFAULT_MODELS["local"]
    assert default_rephrasings("local", bundled, bundled) == 0
    assert default_rephrasings("local", "llama-3.1-8b-instruct", bundled) == REPHRASINGS == 3
    assert default_rephrasings("openai", "gpt-4.1-mini", bundled) == 3
    assert default_rephrasings("gemini", bundled, bundled) == 3
