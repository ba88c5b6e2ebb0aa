"""Held-out questions over the warehouse, written before the constrained generator was tuned (issue #13).

Scored separately from `GOLD` (`rag_assets.inference.sql.gold`), so a figure tuned on the 25 gold
questions can be checked on questions the tuning never saw. Same form: the question, the SQL whose
result is the correct answer, the tables it needs. Do not edit these to fit the generator.
"""

from __future__ import annotations

from rag_assets.inference.sql.gold import GoldQuestion, _q

HELD_OUT: list[GoldQuestion] = [
    _q("How many runs failed?", "SELECT count(*) FROM runs WHERE status = 'FAILURE'", "runs"),
    _q("How many distinct sources have documents?", "SELECT count(DISTINCT source) FROM documents", "documents"),
    _q("How many chunks come from sensitive sources?", "SELECT count(*) FROM chunks WHERE sensitive", "chunks"),
    _q("What is the smallest number of tokens in a chunk?", "SELECT min(n_tokens) FROM chunks", "chunks"),
    _q("What is the average length of a document in characters?", "SELECT avg(n_chars) FROM documents", "documents"),
    _q("When was the most recently updated document modified?", "SELECT max(updated_at) FROM documents", "documents"),
    _q("How many tokens does each source have in total?", "SELECT source, sum(n_tokens) FROM chunks GROUP BY source", "chunks"),
    _q("What is the average number of tokens per chunk for each source?",
       "SELECT source, avg(n_tokens) FROM chunks GROUP BY source", "chunks"),
    _q("How many runs does each job have?", "SELECT job_name, count(*) FROM runs GROUP BY job_name", "runs"),
    _q("Which documents have more than 5000 characters?", "SELECT title FROM documents WHERE n_chars > 5000", "documents"),
    _q("Which sources are re-ingested nightly?", "SELECT name FROM sources WHERE schedule = 'nightly'", "sources"),
    _q("What are the titles of the three longest documents?", "SELECT title FROM documents ORDER BY n_chars DESC LIMIT 3", "documents"),
    _q("Which chunk has the most tokens?", "SELECT chunk_id FROM chunks ORDER BY n_tokens DESC LIMIT 1", "chunks"),
    _q("What is the title of the shortest document?", "SELECT title FROM documents ORDER BY n_chars ASC LIMIT 1", "documents"),
    _q("Which run took the longest?", "SELECT run_id FROM runs ORDER BY duration_s DESC LIMIT 1", "runs"),
    _q("How many chunks does each document title have?",
       "SELECT d.title, count(*) FROM documents d JOIN chunks c ON c.doc_id = d.doc_id GROUP BY d.title", "documents", "chunks"),
    _q("What is the total number of tokens in the chunks of each document locator?",
       "SELECT d.locator, sum(c.n_tokens) FROM documents d JOIN chunks c ON c.doc_id = d.doc_id GROUP BY d.locator",
       "documents", "chunks"),
    _q("How many chunks do the documents of each source have?",
       "SELECT d.source, count(*) FROM documents d JOIN chunks c ON c.doc_id = d.doc_id GROUP BY d.source", "documents", "chunks"),
]
