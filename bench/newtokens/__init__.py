"""New tokens in a language model: only their rows train, with every approach and PEFT beside.

``corpus`` (the text and the tokenizer), ``workload`` (models, profiles, pre-training), ``installs``
(``impls.train_only_rows`` and PEFT's path behind one interface), ``case`` (one measured case, in a
fresh process), ``command`` (``python -m bench newtokens``), ``answer`` (what the report says,
from the records; torch-free).
"""
