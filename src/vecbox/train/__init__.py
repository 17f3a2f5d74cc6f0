"""Make better embeddings: elastic (Matryoshka / 2D Matryoshka / Starbucks) fine-tuning of
sentence-transformers models, training pairs from a corpus, hard-negative mining from a
collection, and model merging.

Submodules import torch and sentence-transformers (the ``text`` extra) when used; importing
``vecbox.train`` itself imports neither.
"""
