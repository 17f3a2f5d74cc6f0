"""Make better embeddings: elastic (Matryoshka / 2D Matryoshka / Starbucks) fine-tuning of
sentence-transformers models, a late-interaction (MaxSim) token head, training pairs from a
corpus, hard-negative mining from a collection, and model merging.

- :mod:`vecbox.train.losses` - MNRL, Matryoshka, 2DMSE (sentence-transformers), Starbucks and MaxSim (ours)
- :mod:`vecbox.train.late` - the late-interaction head (a token-level ``Dense``, 128-d) and its MaxSim loss
- :mod:`vecbox.train.fit` - ``train()``: the loop, pickle-free checkpoints, resume, a time budget
- :mod:`vecbox.train.pairs` - corpora (BEIR / JSONL / CSV / Parquet / a collection) to pairs
- :mod:`vecbox.train.mining` - hard negatives with NV-Embed's positive-aware filter
- :mod:`vecbox.train.merge`, :mod:`vecbox.train.positioning` - linear, SLERP, task arithmetic, TIES,
  Self Positioning
- :mod:`vecbox.train.card` - the model card; :mod:`vecbox.train.tiny` - a tiny BERT for tests

Submodules import torch and sentence-transformers (the ``text`` extra) when used; importing
``vecbox.train`` itself imports neither. The command line is ``vecbox train pairs | mine | merge``.
"""
