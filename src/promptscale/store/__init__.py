"""The results store and what its rows are made of.

``results``: the store itself (append, read, "is this config finished?"); ``rows``: the rows of
one job; ``hashing``: a config's identity; ``provenance``: the code and machine behind a row.
Nothing here imports training, figures or W&B: every reader and writer imports down into it.
"""
