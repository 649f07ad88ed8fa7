"""Synthetic input data shaped like Japan in 2020, with planted faults and their ground truth.

Modules: `tables` (published statistics), `vocabulary` (names, municipalities, branches),
`population` (households and residents), `faults` (planted faults and truth), `banking`
(linked accounts, applications), `points` (services, wallets, transactions). Every function takes
a seeded numpy Generator and returns new arrays or frames; `pipelines/generate.py` composes them
chunk by chunk and is the only writer.
"""
