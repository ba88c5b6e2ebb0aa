"""The SQL assistant: a DuckDB warehouse of the platform's own data, a schema index in Milvus, and a
job that turns a question into one validated, read-only SELECT and its result table."""
