"""Shared by every subsystem: the result-file schema (torch-free), result files, the
environment record, named optimizers, the frozen-rows judgement, timing statistics, fresh
processes and the words for errors and bytes."""
