"""Experiments: variants of the pipeline built side by side, evaluated on labeled questions, and compared.

`spec` reads an experiment file, `launch` runs it on the platform over GraphQL, `compare` turns the
`evaluation` materializations of its runs into one table (the CLI and the `experiment_report` asset), and
`cli` is `rag experiment run|compare`.
"""
