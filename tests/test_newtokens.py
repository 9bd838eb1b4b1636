"""``python -m bench newtokens``: the workload on a tiny profile, its records, its answer.

The tiny profile keeps the real path (tokenizer trained on gensim's Lee corpus, GPT-2 and Llama
from their config classes, pre-training, new words added, PEFT through ``get_peft_model``) at a
size that runs in seconds. Times are recorded but never asserted.
"""

from __future__ import annotations

import dataclasses
import json
import re

import gensim  # noqa: F401
import peft  # noqa: F401
import pytest
import torch
import transformers

from bench import __main__ as bench_cli
from bench.common.schema import NEWTOKENS, PEFT_PEER
from bench.newtokens import command, corpus, workload
from bench.report import newtokens_answer as answer

transformers.logging.set_verbosity_error()

TINY_MODELS = tuple(
    dataclasses.replace(
        spec, hidden=32, layers=1, heads=2, kv_heads=1, pretrain_steps=5, batch_size=4,
        warmup_steps=1, measured_steps=2,
    )
    for spec in workload.SMALL
)  # fmt: skip
TINY = workload.NewTokensProfile(
    "tiny", TINY_MODELS, tokenizer_vocab=600, new_tokens=4, sequence_length=32
)
APPROACHES = ["fused", "grad_zero", PEFT_PEER, "freeze_all"]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("newtokens")


@pytest.fixture(scope="module")
def records(out) -> dict[tuple[str, str], dict]:
    results = command.run_newtokens(TINY, APPROACHES, ["cpu"], out, isolate=False, attempts=1)
    written = json.loads((out / "newtokens.json").read_text())
    assert written == json.loads(json.dumps(results.records, default=str))
    assert (out / "newtokens.csv").read_text().startswith("approach,")
    return {(r["approach"], r["model"]): r for r in written}


def test_a_rerun_with_the_same_out_resumes_without_preparing_anything(records, out, monkeypatch):
    def prepare(*args):
        raise AssertionError("every case was finished: nothing should be prepared")

    monkeypatch.setattr(command, "prepare", prepare)
    rerun = command.run_newtokens(TINY, APPROACHES, ["cpu"], out, isolate=False, attempts=1)
    assert {(r["approach"], r["model"]): r for r in rerun.records} == records


def test_one_record_per_approach_and_model_with_every_key(records):
    assert sorted(records) == sorted((a, m.name) for a in APPROACHES for m in TINY_MODELS)
    for record in records.values():
        assert list(record) == list(NEWTOKENS.columns)
        assert record["tied"] is (record["model"] == "gpt2")
        assert record["vocab_size"] == records[("fused", "gpt2")]["vocab_size"]
        assert record["new_tokens"] == 4 and record["embedding_dim"] == 32


@pytest.mark.parametrize("model", ["gpt2", "llama"])
@pytest.mark.parametrize("approach", ["fused", PEFT_PEER])
def test_exact_approaches_keep_every_frozen_row_and_merge_to_the_same_logits(
    records, approach, model
):
    record = records[(approach, model)]
    assert record["status"] == "ok", record["reason"]
    assert record["frozen_rows_identical"] is True and record["max_frozen_change"] == 0.0
    assert record["new_rows"] == 4 * (1 if record["tied"] else 2)
    assert record["new_rows_changed"] == record["new_rows"]
    assert record["merged_logits_equal"] is True
    assert record["checkpoint_logits_equal"] is True
    assert 0 < record["checkpoint_bytes"] < record["full_checkpoint_bytes"] / 10


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_grad_zero_moves_frozen_rows_under_default_weight_decay(records, model):
    record = records[("grad_zero", model)]
    assert record["status"] == "ok" and record["weight_decay"] == 0.01
    assert record["frozen_rows_identical"] is False and record["max_frozen_change"] > 0
    assert record["merged_logits_equal"] is True  # merging is exact; the damage is done earlier
    assert record["checkpoint_logits_equal"] is False  # the drift is not in the small checkpoint


def test_an_approach_with_nothing_to_train_is_recorded_as_skipped(records):
    record = records[("freeze_all", "gpt2")]
    assert record["status"] == "skipped" and "no parameter to train" in record["reason"]
    assert record["step_median_s"] is None


def test_measured_fields_are_numbers(records):
    record = records[("fused", "llama")]
    for key in ("loss_first", "loss_last", "step_median_s", "forward_median_s", "peak_bytes"):
        assert isinstance(record[key], (int, float)), key
    assert record["pretrain_steps"] == 5 and record["isolated"] is False
    assert record["attempts"] == 1 and isinstance(record["noisy"], bool)
    assert record["threads"] >= 1 and record["step_iqr_s"] >= 0


def test_answer_from_the_records_picks_an_approach_that_did_the_job(records):
    answers = {a["model"]: a for a in answer.newtokens_answers(records.values())}
    assert sorted(answers) == ["gpt2", "llama"]
    for model, result in answers.items():
        assert result["approach"] in ("fused", PEFT_PEER)
        assert answer.did_the_job(records[(result["approach"], model)])
        assert result["moved_frozen_rows"] == ["grad_zero"]
        assert sorted(result["compared"]) == sorted(["grad_zero", PEFT_PEER])
        assert result["compared"]["grad_zero"]["did_the_job"] is False
        assert 0 < result["checkpoint_fraction"] < 0.1


def record(approach, step_s, exact=True, **changes):
    return {
        "approach": approach, "model": "m", "device": "cpu", "tied": True, "vocab_size": 10,
        "new_tokens": 2, "embedding_dim": 4, "status": "ok", "frozen_rows_identical": exact,
        "merged_logits_equal": True, "new_rows": 2, "new_rows_changed": 2, "step_median_s": step_s,
        "forward_median_s": 0.0, "backward_median_s": 0.0, "optimizer_median_s": 0.0,
        "peak_bytes": 100, "checkpoint_bytes": 10, "full_checkpoint_bytes": 1000, **changes,
    }  # fmt: skip


def test_answer_is_the_fastest_exact_approach_with_numbers_not_text():
    records = [
        record("grad_zero", 0.5, exact=False),
        record("split", 2.0),
        record("fused", 1.0),
        record(PEFT_PEER, 4.0, peak_bytes=300),
        record("concat", 0.8, merged_logits_equal=False),
        record("index_copy", 0.9, new_rows_changed=1),
        record("restore", 0.1, status="failed"),
    ]
    (result,) = answer.newtokens_answers(records)
    assert result["approach"] == "fused" and result["step_median_s"] == 1.0
    assert result["noisy"] is None  # not recorded in these records
    assert result["did_the_job"] == ["fused", "split", PEFT_PEER]
    assert result["moved_frozen_rows"] == ["grad_zero"]
    assert result["compared"][PEFT_PEER]["speedup"] == 4.0
    assert result["compared"][PEFT_PEER]["peak_ratio"] == 3.0
    assert result["compared"]["split"]["speedup"] == 2.0
    assert result["compared"]["grad_zero"] == {
        "did_the_job": False, "step_median_s": 0.5, "peak_bytes": 100, "checkpoint_bytes": 10,
        "speedup": 0.5, "peak_ratio": 1.0,
    }  # fmt: skip
    assert result["checkpoint_fraction"] == 0.01


def test_no_answer_when_no_approach_did_the_job():
    (result,) = answer.newtokens_answers([record("grad_zero", 0.5, exact=False)])
    assert result["approach"] is None and result["checkpoint_fraction"] is None
    assert result["compared"]["grad_zero"]["speedup"] is None


def test_a_case_over_the_memory_budget_is_skipped_with_the_estimate():
    prepared = workload.PreparedModel(
        spec=workload.LLM_SIZED[1], sequence_length=64, old_rows=workload.LLM_ROWS,
        new_ids=tuple(range(workload.LLM_ROWS, workload.LLM_ROWS + 16)), train=None,
        held_out=None, state_path=None, pretrain_loss=None, seed=0,
    )  # fmt: skip
    tables = 2 * prepared.vocab_size * workload.LLM_WIDTH * 4
    estimate = command.estimate_bytes(prepared, "grad_zero")
    assert 4 * tables < estimate < 20 * (1 << 30)  # weight, gradient, two moments per table
    case = command.NewTokensCase("grad_zero", "cpu", prepared, 0.01)
    fields = command.measure(case, TINY, memory_budget=1 << 30, isolate=False)
    assert fields["status"] == "skipped" and fields["estimated_bytes"] == estimate
    assert re.fullmatch(r"estimated [\d.]+ GiB > 1 GiB \(the memory budget\)", fields["reason"])


def test_new_words_are_whole_words_the_tokenizer_cut_into_pieces():
    stories = corpus.read_stories(corpus.corpus_path())
    assert len(stories.train) == 240 and len(stories.held_out) == 60
    tokenizer = corpus.train_tokenizer(stories.train, 600)
    assert tokenizer.eos_token_id == corpus.EOS_ID
    words = corpus.choose_new_words(tokenizer, stories.train, 4)
    assert all(len(tokenizer.tokenize(w)) >= corpus.MIN_PIECES for w in words)
    ids = corpus.add_words(tokenizer, words)
    text = f"the {words[0]} and {words[1]}."
    assert tokenizer.tokenize(text)[1] == words[0] and ids[0] in tokenizer(text)["input_ids"]
    with pytest.raises(ValueError, match=r"new_tokens: expected at most \d+ .* got 100000"):
        corpus.choose_new_words(tokenizer, stories.train, 100_000)


def test_command_line_runs_a_case_in_a_fresh_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(workload.PROFILES, "tiny", TINY)
    argv = ["newtokens", "--out", str(tmp_path), "--profile", "tiny", "--models", "llama"]
    assert bench_cli.main([*argv, "--approaches", "split"]) == 0
    (written,) = json.loads((tmp_path / "newtokens.json").read_text())
    assert written["status"] == "ok", written["reason"]
    assert written["isolated"] is True and written["frozen_rows_identical"] is True
    assert "llama/cpu" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--approaches", "nope"], "invalid choice: 'nope'"),
        (["--profile", "huge"], "invalid choice: 'huge'"),
        (["--device", "tpu"], "expected cpu, cuda or cuda:N, got 'tpu'"),
        *(
            []
            if torch.cuda.is_available()
            else [(["--device", "cuda"], "torch.cuda.is_available() is False")]
        ),
    ],
)
def test_command_refuses_bad_arguments(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["newtokens", "--out", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_command_refuses_an_unknown_model(tmp_path, capsys):
    assert bench_cli.main(["newtokens", "--out", str(tmp_path), "--models", "bert"]) == 2
    assert "--models: expected names from ['gpt2', 'llama'], got 'bert'" in capsys.readouterr().err


def test_the_peer_has_one_name_here_and_in_the_benchmarks():
    from bench.peers import PEERS
    from bench.peers.peft_trainable_tokens import PeftTrainableTokens

    assert PeftTrainableTokens.name == PEFT_PEER and PEFT_PEER in PEERS
    assert PEFT_PEER in command.approach_names()
