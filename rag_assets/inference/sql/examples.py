"""Worked examples for the SQL prompt, picked per question by similarity (dynamic few-shot).

A tiny model continues the pattern of the examples nearest its question: shown the most similar questions
and their SQL on a made-up `orders`/`customers` schema, it writes the same shape of query, and the grammar
(`grammar.sql_grammar`) makes it use the real tables and columns instead of the example's. The examples
are written in the grammar's own form (lower-case aggregates, `JOIN ... ON b.id = a.id`, a final `;`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

EXAMPLE_TABLES = """CREATE TABLE orders (order_id VARCHAR, customer_id VARCHAR, status VARCHAR, amount DOUBLE, n_items INTEGER,
  placed_at TIMESTAMP, paid BOOLEAN, note VARCHAR);
CREATE TABLE customers (customer_id VARCHAR, name VARCHAR, city VARCHAR, vip BOOLEAN);"""

_JOIN = "FROM customers JOIN orders ON orders.customer_id = customers.customer_id"
EXAMPLES: list[tuple[str, str]] = [
    ("How many orders are there?", "SELECT count(*) FROM orders"),
    ("How many customers are registered?", "SELECT count(*) FROM customers"),
    ("How many orders were paid?", "SELECT count(*) FROM orders WHERE paid"),
    ("How many orders are shipped?", "SELECT count(*) FROM orders WHERE status = 'SHIPPED'"),
    ("How many different cities do customers live in?", "SELECT count(DISTINCT city) FROM customers"),
    ("List the names of all customers.", "SELECT name FROM customers"),
    ("What city is each customer in?", "SELECT name, city FROM customers"),
    ("Which customers are VIPs?", "SELECT name FROM customers WHERE vip"),
    ("Which orders were cancelled?", "SELECT order_id FROM orders WHERE status = 'CANCELLED'"),
    ("Which orders have no note, and what is their status?", "SELECT order_id, status FROM orders WHERE note IS NULL"),
    ("Which orders are over 100 in amount?", "SELECT order_id FROM orders WHERE amount > 100"),
    ("How many orders does each customer have?", "SELECT customer_id, count(*) FROM orders GROUP BY customer_id"),
    ("What is the total amount of the orders of each status?", "SELECT status, sum(amount) FROM orders GROUP BY status"),
    ("What is the average amount per customer?", "SELECT customer_id, avg(amount) FROM orders GROUP BY customer_id"),
    ("What is the average amount of an order?", "SELECT avg(amount) FROM orders"),
    ("What is the highest amount of an order?", "SELECT max(amount) FROM orders"),
    ("What is the total number of items over all orders?", "SELECT sum(n_items) FROM orders"),
    ("When was the first order placed?", "SELECT min(placed_at) FROM orders"),
    ("How many orders are not paid?", "SELECT count(*) FROM orders WHERE NOT paid"),
    ("Which orders were delivered, and when were they placed?", "SELECT order_id, placed_at FROM orders WHERE status = 'DELIVERED'"),
    ("Which order has the largest amount?", "SELECT order_id FROM orders ORDER BY amount DESC LIMIT 1"),
    ("What is the note of the most expensive order?", "SELECT note FROM orders ORDER BY amount DESC LIMIT 1"),
    ("Which order has the fewest items?", "SELECT order_id FROM orders ORDER BY n_items ASC LIMIT 1"),
    ("What are the five most recent orders?", "SELECT order_id FROM orders ORDER BY placed_at DESC LIMIT 5"),
    ("Which status is the most common?", "SELECT status FROM orders GROUP BY status ORDER BY count(*) DESC LIMIT 1"),
    ("What is the total amount spent by each customer name?", f"SELECT customers.name, sum(orders.amount) {_JOIN} GROUP BY customers.name"),
    ("Which customer has the most orders?", f"SELECT customers.name {_JOIN} GROUP BY customers.name ORDER BY count(*) DESC LIMIT 1"),
]
N_EXAMPLES = 3


def _terms(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


_POOL = [_terms(q) for q, _ in EXAMPLES]
_DF = Counter(t for terms in _POOL for t in terms)
_IDF = {t: math.log(len(_POOL) / n) + 0.1 for t, n in _DF.items()}


def pick_examples(question: str, k: int = N_EXAMPLES, where: Callable[[str], bool] | None = None) -> list[list[str]]:
    """The `k` examples whose questions share the most words and word pairs with `question` (weighted by how
    rare they are among the examples), nearest last; only those whose SQL passes `where`, if given. Words, not
    embeddings: the examples' nouns (orders, customers) never match the warehouse's, so what matches is the
    question's form ("how many ... each")."""
    terms = _terms(question)
    scores = [sum(_IDF[t] for t in terms & pool) / math.sqrt(len(pool)) for pool in _POOL]
    allowed = [i for i, (_, sql) in enumerate(EXAMPLES) if where is None or where(sql)]
    order = sorted(allowed, key=lambda i: -scores[i])[:k]
    return [list(EXAMPLES[i]) for i in reversed(order)]


def render_examples(examples: list[list[str]]) -> str:
    """The examples as a prompt block: the made-up tables, then question and SQL pairs."""
    pairs = "\n".join(f"Question: {q}\nSQL: {sql};" for q, sql in examples)
    return f"Examples on other tables:\n{EXAMPLE_TABLES}\n\n{pairs}\n\n"
