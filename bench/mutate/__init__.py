"""How strong the verification is: realistic faulty variants and independently written correct
implementations, run through the matrix (``python -m bench mutate``).

:mod:`bench.mutate.faulty` holds the bugs people write when they freeze rows, each one reference
approach with one bug; :mod:`bench.mutate.correct` three correct implementations that share no
code with :mod:`impls`. The kill rate says how many real bugs the matrix would catch, the correct
ones that it raises no false alarm.
"""
