"""Gold questions over the warehouse: each with the SQL whose result is the correct answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GoldQuestion:
    question: str
    sql: str
    tables: tuple[str, ...]  # the tables the answer needs (for checking schema retrieval)


def _q(question: str, sql: str, *tables: str) -> GoldQuestion:
    return GoldQuestion(question, sql, tables)


GOLD: list[GoldQuestion] = [
    _q("How many documents are there?", "SELECT count(*) FROM documents", "documents"),
    _q("How many chunks are there?", "SELECT count(*) FROM chunks", "chunks"),
    _q("How many sources are declared?", "SELECT count(*) FROM sources", "sources"),
    _q("List the names of all sources.", "SELECT name FROM sources", "sources"),
    _q("What kind is each source?", "SELECT name, kind FROM sources", "sources"),
    _q("Which sources are marked sensitive?", "SELECT name FROM sources WHERE sensitive", "sources"),
    _q("How many documents does each source have?", "SELECT source, count(*) FROM documents GROUP BY source", "documents"),
    _q("How many chunks does each source have?", "SELECT source, count(*) FROM chunks GROUP BY source", "chunks"),
    _q("List the titles of all documents.", "SELECT title FROM documents", "documents"),
    _q("Which documents could not be read, and why?", "SELECT locator, error FROM documents WHERE error IS NOT NULL", "documents"),
    _q("How many sensitive documents are there?", "SELECT count(*) FROM documents WHERE sensitive", "documents"),
    _q("What is the average number of tokens per chunk?", "SELECT avg(n_tokens) FROM chunks", "chunks"),
    _q("What is the largest number of tokens in a chunk?", "SELECT max(n_tokens) FROM chunks", "chunks"),
    _q("What is the total number of tokens over all chunks?", "SELECT sum(n_tokens) FROM chunks", "chunks"),
    _q("What is the title of the longest document?", "SELECT title FROM documents ORDER BY n_chars DESC LIMIT 1", "documents"),
    _q("How many characters of text does each source have in total?", "SELECT source, sum(n_chars) FROM documents GROUP BY source", "documents"),
    _q("Which document has the most chunks?",
       "SELECT d.title FROM documents d JOIN chunks c ON c.doc_id = d.doc_id GROUP BY d.doc_id, d.title ORDER BY count(*) DESC LIMIT 1",
       "documents", "chunks"),
    _q("How many runs are there?", "SELECT count(*) FROM runs", "runs"),
    _q("How many runs succeeded?", "SELECT count(*) FROM runs WHERE status = 'SUCCESS'", "runs"),
    _q("How many runs are there for each status?", "SELECT status, count(*) FROM runs GROUP BY status", "runs"),
    _q("Which runs failed?", "SELECT run_id FROM runs WHERE status = 'FAILURE'", "runs"),
    _q("What is the average run duration in seconds?", "SELECT avg(duration_s) FROM runs", "runs"),
    _q("When did the most recent run start?", "SELECT max(started_at) FROM runs", "runs"),
    _q("What is the best nDCG@10 among the evaluation results?", "SELECT max(ndcg_at_10) FROM eval_results", "eval_results"),
    _q("Which retrieval mode has the highest nDCG@10?", "SELECT mode FROM eval_results ORDER BY ndcg_at_10 DESC LIMIT 1", "eval_results"),
]
