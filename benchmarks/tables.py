"""Markdown tables from committed result JSONs, one renderer per kind of result.

A registry file (``registry/*.yaml``) names its result and the renderer (``table:``); every figure
on a generated page comes from a renderer reading the JSON, never from text written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats

Renderer = Callable[[list[dict], list[Path]], list[str]]


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def fold_ci(result: dict) -> tuple[float, float]:
    """95 % CI of the mean test UA over folds (t distribution, folds as samples)."""
    scores = np.array([f["ua"] for f in result["folds"]], dtype=float)
    half = stats.t.ppf(0.975, len(scores) - 1) * scores.std(ddof=1) / np.sqrt(len(scores))
    return scores.mean() - half, scores.mean() + half


def val_score(result: dict) -> float | None:
    """Mean validation UA of the kept models over the folds, if every fold has one."""
    scores = [f.get("val_best") for f in result.get("folds", [])]
    return None if not scores or any(s is None for s in scores) else float(np.mean(scores))


def headline_figure(result: dict) -> tuple[float, tuple[float, float] | None, float | None]:
    """(UA, its 95 % CI, WA) of a cross-validation, an ensemble or a LOCO summary."""
    if "cells" in result and "mean_ua" in result:  # LOCO summary: the mean over held-out corpora
        return result["mean_ua"], None, float(np.mean([c["wa"] for c in result["cells"]]))
    return result["mean_ua"], fold_ci(result), result.get("mean_wa")


def cv(results: list[dict], _paths: list[Path]) -> list[str]:
    """Folds of a cross-validation (``crossval.py``, ``ravdess_6fold.py``, the baselines)."""
    lines = []
    for r in results:
        low, high = fold_ci(r)
        lines += [f"**{r['model']}** on {r['features']} ({r['corpus']}"
                  + (f"; {r['protocol']}" if r.get("protocol") else "") + ")"
                  + (" — **transductive (speaker_norm)**" if r.get("speaker_norm") else ""), "",
                  "| fold | test speakers | UA % | WA % | macro-F1 % |", "|---|---:|---:|---:|---:|"]
        for f in r["folds"]:
            lines.append(f"| {f['fold']} | {len(f.get('test_speakers') or [])} | {fmt(f['ua'])} | "
                         f"{fmt(f['wa'])} | {fmt(f['macro_f1'])} |")
        lines += [f"| **mean** | | **{fmt(r['mean_ua'])}** [{fmt(low)}, {fmt(high)}] | "
                  f"{fmt(r['mean_wa'])} | {fmt(r['mean_macro_f1'])} |", ""]
        if val_score(r) is not None:
            lines.append(f"Validation UA (validation speakers, the kept models): {fmt(val_score(r))} %.")
        if r.get("mean_test_ece_before") is not None:
            lines.append(f"Test ECE (15 bins): {r['mean_test_ece_before']:.3f} before the temperature "
                         f"fitted on validation speakers, {r['mean_test_ece_after']:.3f} after.")
        lines += ["", f"Command: `{r['command']}`", ""]
    return lines


def ensemble(results: list[dict], _paths: list[Path]) -> list[str]:
    """An equal-weight ensemble over folds, with its members' figures beside it."""
    lines = []
    for r in results:
        lines += [f"**{r['model']}** on {r['features']}: class probabilities averaged, members weigh "
                  "equally", "",
                  "| fold | test speakers | UA % | members' UA % | validation UA % | members' validation UA % |",
                  "|---|---|---:|---|---:|---|"]
        for f in r["folds"]:
            speakers = ", ".join(str(s).split("/")[-1] for s in f["test_speakers"])
            lines.append(f"| {f['fold']} | {speakers} | {fmt(f['ua'])} | {', '.join(map(fmt, f['member_ua']))} | "
                         f"{fmt(f['val_ua'])} | {', '.join(map(fmt, f['member_val_ua']))} |")
        low, high = fold_ci(r)
        lines += [f"| **mean** | | **{fmt(r['mean_ua'])}** [{fmt(low)}, {fmt(high)}] | "
                  f"{fmt(r['mean_member_ua'])} (mean) | {fmt(r['mean_val_ua'])} | "
                  f"{fmt(r['mean_member_val_ua'])} (mean) |", "",
                  f"WA {fmt(r['mean_wa'])} %, macro-F1 {fmt(r['mean_macro_f1'])} %. Members: "
                  + "; ".join(f"`{m['results']}` ({fmt(m['mean_ua'])} %)" for m in r["members"]) + ".", "",
                  f"Command: `{r['command']}`", ""]
    return lines


def loco(results: list[dict], paths: list[Path]) -> list[str]:
    """A leave-one-corpus-out summary (``loco.py``): one row per held-out corpus."""
    lines = []
    for r, path in zip(results, paths):
        lines += [f"Recipe `{r['recipe']}`"
                  + (" (an equal-weight ensemble of " + " and ".join(f"`{m}`" for m in r["members"]) + ")"
                     if r.get("members") else "")
                  + f": mean validation UA {fmt(r['mean_val_ua'])} %; test mean UA {fmt(r['mean_ua'])} %, "
                  f"lowest {fmt(r['min_ua'])} %, largest single-class share {fmt(r['max_top_share'])} %.", "",
                  r["table"], "",
                  "Share of each predicted class: " + "; ".join(
                      f"{c['held_out']} " + ", ".join(f"{k} {100 * v:.0f}" for k, v in
                                                      sorted(c["predicted_share"].items(), key=lambda kv: -kv[1]))
                      for c in r["cells"]) + " (%).", "",
                  f"![LOCO confusion matrices](results/{path.with_suffix('.png').name})", "",
                  f"Command: `{r['command']}`; each cell's JSON, command and per-clip predictions: "
                  f"`results/loco/{Path(r['recipe']).stem}/`"
                  + ("; training time per cell " + ", ".join(
                      f"{c['held_out']} {c['train_seconds'] / 60:.0f} min" for c in r["cells"])
                     if all(c.get("train_seconds") for c in r["cells"]) else "") + ".", ""]
    return lines


def models(results: list[dict], _paths: list[Path]) -> list[str]:
    """Every audio architecture under one protocol (``models_ravdess_6fold.py``)."""
    lines = ["| model | recipe | mean UA % ± std | mean WA % | mean macro-F1 % | training s per fold (median) |",
             "|---|---|---:|---:|---:|---:|"]
    for e in results[0]:
        seconds = [f.get("train_seconds") or 0 for f in e["folds"]]
        lines.append(f"| {e['model']} | {e.get('recipe', '-')} | {fmt(e['mean_ua'])} ± {fmt(e['std_ua'])} | "
                     f"{fmt(e['mean_wa'])} | {fmt(e['mean_macro_f1'])} | {float(np.median(seconds)):.0f} |")
    return lines + ["", "Per-fold rows are in the JSON. Command: `python models_ravdess_6fold.py`.", ""]


def av_missing_modality(results: list[dict], _paths: list[Path]) -> list[str]:
    a = results[0]
    lines = [a["corpus"] + ".", "",
             "| model | AV | audio-only model | video-only model | AV, video dropped | AV, audio dropped | "
             "AV beats both | dropped within 2 points |", "|---|---:|---:|---:|---:|---:|:-:|:-:|"]
    for e in a["models"]:
        lines.append(f"| {e['model']} | {fmt(e['av']['mean_ua'])} | {fmt(e['audio_only']['mean_ua'])} | "
                     f"{fmt(e['video_only']['mean_ua'])} | {fmt(e['av_drop_video']['mean_ua'])} | "
                     f"{fmt(e['av_drop_audio']['mean_ua'])} | {'yes' if e['av_beats_both'] else 'no'} | "
                     f"{'yes' if e['within_2_points'] else 'no'} |")
    return lines + ["", f"Mean test UA % over folds. {a['metric']}. Command: `{a['command']}`", ""]


def crosscorpus(results: list[dict], _paths: list[Path]) -> list[str]:
    m = results[0]
    return [m["table"], "", "![cross-corpus matrix](results/crosscorpus.png)", "",
            f"Command: `{m['command']}` (each cell's own command is in the JSON).", ""]


def robustness(results: list[dict], paths: list[Path]) -> list[str]:
    """UA per recording condition, the drop from clean, and the class taking most predictions."""
    lines = []
    for r, path in zip(results, paths):
        part = "validation speakers" if r.get("part") == "val" else "test folds"
        front = r.get("inference_features")
        front = (", front end at inference: " + ", ".join(f"`{k}: {v}`" for k, v in front.items())) if front else ""
        lines += [f"**{r.get('source', path.stem)}** ({part}, {r['n_clips']} clips, chance "
                  f"{fmt(r['chance_ua'])} %{front}):", "",
                  "| condition | UA % [95 % CI] | drop (points) | top class (share %) |", "|---|---:|---:|---|"]
        for name, c in r["conditions"].items():
            ci = c.get("ci", {}).get("ua") or [c["ua"], c["ua"]]
            lines.append(f"| {name} | {fmt(c['ua'])} [{fmt(ci[0])}, {fmt(ci[1])}] | {c['drop_points']:+.1f} | "
                         f"{c['top_class']} ({100 * c['top_share']:.0f}) |")
        lines += ["", f"![robustness](results/robustness/{path.stem}.png)", "", f"Command: `{r['command']}`", ""]
    return lines


SPEED_ROWS = (("training clips/s", "train_ratio"), ("inference, batches of 64", "infer_batch64_ratio"),
              ("inference, one clip", "infer_batch1_speedup"),
              ("peak memory, emorec / Keras (below 1 is leaner)", "peak_rss_ratio"))


def speed_ratios(speed: dict) -> list[str]:
    """emorec / Keras ratios for v1 and v2 (the README shows this table alone)."""
    s = speed["summary"]
    lines = [f"{speed['threads']} threads, medians of {speed['rounds']} interleaved rounds; emorec / Keras, "
             "above 1 is faster.", "", "| | v1 (`configs/attn_crnn.yaml`) | v2 (headline recipe) |", "|---|---:|---:|"]
    return lines + [f"| {label} | {s['v1'][key]:.2f}x | {s['v2'][key]:.2f}x |" for label, key in SPEED_ROWS]


def speed_vs_keras(results: list[dict], _paths: list[Path]) -> list[str]:
    speed = results[0]
    s, x = speed["summary"], speed["summary"]["extraction"]
    lines = speed_ratios(speed) + ["", "| absolute | v1 emorec | v1 Keras | v2 emorec | v2 Keras |",
                                   "|---|---:|---:|---:|---:|"]
    for label, ours, theirs in (("training clips/s", "emorec_train_clips_per_s", "peer_train_clips_per_s"),
                                ("inference clips/s, batch 64", "emorec_infer_clips_per_s_batch64",
                                 "peer_infer_clips_per_s_batch64"),
                                ("inference ms per clip, batch 1", "emorec_infer_ms_per_clip_batch1",
                                 "peer_infer_ms_per_clip_batch1"),
                                ("peak RSS MB", "emorec_peak_rss_mb", "peer_peak_rss_mb")):
        lines.append(f"| {label} | {s['v1'][ours]:.1f} | {s['v1'][theirs]:.1f} | {s['v2'][ours]:.1f} | "
                     f"{s['v2'][theirs]:.1f} |")
    return lines + ["", f"Log-mel extraction with 2 workers: {x['logmel_times_real_time']:.0f}x real time, "
                    f"{x['logmel_deltas_times_real_time']:.0f}x with delta planes. Versions: "
                    + ", ".join(f"{k} {v}" for k, v in speed["versions"].items()) + ".", "",
                    f"Command: `{speed['command']}`", ""]


def same_seed(results: list[dict], _paths: list[Path]) -> list[str]:
    """One recipe and seed before and after a code change: is accuracy unchanged?"""
    before, after = results
    lines = ["| run | validation UA % | test UA % | training s per fold | command |", "|---|---:|---:|---:|---|"]
    for name, r in (("before", before), ("after", after)):
        lines.append(f"| {name} | {fmt(val_score(r))} | {fmt(r['mean_ua'])} | "
                     f"{r['mean_train_seconds_per_fold']:.0f} | `{r['command']}` |")
    return lines + [""]


def code_before_after(results: list[dict], _paths: list[Path]) -> list[str]:
    ab = results[0]
    return [f"{ab['before_clips_per_s']:.1f} clips/s at `{ab['before_revision']}`, {ab['after_clips_per_s']:.1f} "
            f"clips/s now: **{ab['speedup']:.2f}x** ({ab['threads']} thread).", "", f"Command: `{ab['command']}`", ""]


def before_after_inference(results: list[dict], _paths: list[Path]) -> list[str]:
    r = results[0]
    lines = [f"Before: `{r['before_revision']}`; {r['threads']} thread(s), batch {r['batch']}, {r['frames']}.", "",
             "| architecture | CPU ms before | CPU ms after | CPU speed-up | wall speed-up | outputs agree |",
             "|---|---:|---:|---:|---:|:-:|"]
    lines += [f"| {k} (`{r['recipes'][k]}`) | {s['before_cpu_ms']:.0f} | {s['after_cpu_ms']:.0f} | "
              f"{s['cpu_speedup']:.2f}x | {s['wall_speedup']:.2f}x | {'yes' if s['outputs_agree'] else 'no'} |"
              for k, s in r["summary"].items()]
    return lines + ["", f"Command: `{r['command']}`", ""]


def class_bias(results: list[dict], _paths: list[Path]) -> list[str]:
    r = results[0]
    lines = [f"Recipe `{r['recipe']}`; kept by its validation rule: {'yes' if r['kept'] else 'no'}.", "",
             "| held out | validation UA, halves | with biases (cross-fitted) | test UA | with biases | "
             "top share | with biases |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {c['held_out']} | {fmt(c['val_ua_plain_halves'])} | {fmt(c['val_ua_crossfit_halves'])} | "
              f"{fmt(c['test_ua_before'])} | {fmt(c['test_ua_after'])} | {100 * c['top_share_before']:.0f} % | "
              f"{100 * c['top_share_after']:.0f} % ({c['top_class_after']}) |" for c in r["cells"]]
    lines.append(f"| **mean** | {fmt(r['mean_val_ua_plain_halves'])} | {fmt(r['mean_val_ua_crossfit_halves'])} | "
                 f"{fmt(r['mean_test_ua_before'])} | {fmt(r['mean_test_ua_after'])} | | "
                 f"max {100 * r['max_top_share_after']:.0f} % |")
    return lines + ["", f"Command: `{r['command']}`", ""]


def profile(results: list[dict], _paths: list[Path]) -> list[str]:
    lines = []
    for prof in results:
        layers = ", ".join(f"{k} {v:.0f}" for k, v in prof["layers_forward_ms"].items())
        nodes = ", ".join(f"{n['node'].split(': ')[-1]} {100 * n['share']:.0f} %"
                          for n in prof["backward_nodes_share"][:3] if n["node"].startswith("autograd::engine"))
        lines += [f"`{prof['recipe']}` ({prof['threads']} threads, batch {prof['batch_size']}, median "
                  f"{prof['median_frames_per_batch']:.0f} frames): {prof['step_ms']:.0f} ms per step "
                  f"({prof['clips_per_s']:.0f} clips/s without the Lightning loop): "
                  + ", ".join(f"{k.replace('_', ' ')} {v:.0f} ms" for k, v in prof["phases_ms"].items())
                  + f". Forward by layer (ms): {layers}. Backward, largest nodes (share of the step): {nodes}.",
                  "", f"Command: `{prof['command']}`", ""]
    return lines


def use_speed(results: list[dict], _paths: list[Path]) -> list[str]:
    u = results[0]
    lat, onnx, t, goal = u["latency_ms_batch1"], u["onnx"], u["timeline"], u["targets"]
    lines = [f"Model `{u['model']}`, {u['threads']} threads, one clip {u['clip']}, medians of 50 calls.", "",
             "| measure | value | target |", "|---|---:|---:|",
             f"| model forward, batch 1 | {lat['torch_forward']:.1f} ms | <= {goal['forward_ms']} ms |",
             f"| `rec.predict(file)` end to end | {lat['torch_end_to_end']:.1f} ms | <= {goal['end_to_end_ms']} ms |",
             f"| onnxruntime, waveform in | {lat['onnxruntime_end_to_end_from_samples']:.1f} ms | |",
             f"| onnxruntime, int8 weights | {lat['onnxruntime_int8_from_samples']:.1f} ms | |",
             f"| ONNX file | {onnx['bytes'] / 1e6:.1f} MB (int8: {onnx['int8_bytes'] / 1e6:.1f} MB) | |",
             f"| ONNX vs `rec.predict`, {onnx['parity_clips']} clips, max abs probability difference | "
             f"{onnx['max_abs_prob_diff']:.1e} | <= 1e-4 |",
             f"| int8: max abs difference / same top class | {onnx['int8_max_abs_prob_diff']:.3f} / "
             f"{100 * onnx['int8_same_top_class']:.0f} % | |",
             f"| `emorec timeline`, {t['recording']} | {t['x_real_time']:.0f}x real time, peak RSS "
             f"{t['peak_rss_mb']:.0f} MB | >= 50x |"]
    if "peak_rss_mb_on_a_sixth_as_long" in t:
        lines.append(f"| `emorec timeline`, a recording a sixth as long | peak RSS "
                     f"{t['peak_rss_mb_on_a_sixth_as_long']:.0f} MB | |")
    blas = u.get("numpy_blas_during_features")
    if blas:
        lines += ["", f"NumPy's BLAS on one thread while features are computed: `rec.predict` end to end "
                  f"{blas['end_to_end_ms']['one_thread']:.1f} ms, against {blas['end_to_end_ms']['numpy_default']:.1f} "
                  f"ms with NumPy's default threads ({blas['slowdown_without']:.2f}x)."]
    return lines + ["", f"Command: `{u['command']}`", ""]


def serve_load(results: list[dict], _paths: list[Path]) -> list[str]:
    r = results[0]
    lines = [f"`{r['server']}` on loopback, {r['clip']}; {r['cpu_count']} cores shared by server and clients.", "",
             "| phase | requests/s | p50 ms | p95 ms | p99 ms | answers | client timeouts |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, p in r["phases"].items():
        lat = p["latency_ms"]
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(p["statuses"].items()))
        lines.append(f"| {name.replace('_', ' ')} | {p['requests_per_second']:.1f} | {lat['p50']:.0f} | "
                     f"{lat['p95']:.0f} | {lat['p99']:.0f} | {answers} | {p['client_timeouts']} |")
    m = r["rss_mb"]
    return lines + ["", f"Resident memory: {m['start']:.0f} MB at start, {m['after_warm_up']:.0f} MB after warm-up, "
                    f"{m['end']:.0f} MB at the end ({100 * m['growth_after_warm_up']:+.1f} % after warm-up).", "",
                    f"Command: `{r['command']}`", ""]


def throughput(results: list[dict], _paths: list[Path]) -> list[str]:
    t = results[0]
    tr = t["training_attn_crnn"]
    lines = [f"{t['clips']} real RAVDESS clips, medians of repeats, torch threads {t['torch_threads']}.", "",
             "| measure | value |", "|---|---:|"]
    lines += [f"| log-mel extraction, {e['workers']} worker(s) | {e['clips_per_s']:.1f} clips/s "
              f"({e['times_real_time']:.0f}x real time) |" for e in t["extraction_logmel"]]
    return lines + [
        f"| attn_crnn training, random batches | {tr['train_clips_per_s_random']:.1f} clips/s |",
        f"| attn_crnn training, length-bucketed batches | {tr['train_clips_per_s_bucketed']:.1f} clips/s "
        f"({tr['bucketing_speedup']:.2f}x) |",
        f"| padded frames per batch, random | {100 * tr['padding_fraction_random']:.1f}% |",
        f"| padded frames per batch, bucketed | {100 * tr['padding_fraction_bucketed']:.1f}% |",
        f"| peak memory (RSS) | {t['peak_rss_mb']:.0f} MB |", "", f"Command: `{t['command']}`", ""]


def store_memory(results: list[dict], _paths: list[Path]) -> list[str]:
    m = results[0]
    lines = [f"Peak resident memory of `emorec train` (one epoch of {m['epoch_draws']} draws, `{m['recipe']}`) "
             f"over {m['clips']} made clips of {m['speakers']} speakers whose features "
             f"({m['features_float32_mib'] / 1024:.1f} GiB as float32) are cached; target "
             f"{m['target_mib'] / 1024:.0f} GiB.", "", "| `data.pack` | peak RSS | wall time |", "|---|---:|---:|"]
    lines += [f"| {r['pack']} | {r['peak_rss_mib'] / 1024:.2f} GiB | {r['seconds']:.0f} s |" for r in m["runs"]]
    return lines + ["", f"Command: `{m['command']}`", ""]


def pack_precision(results: list[dict], _paths: list[Path]) -> list[str]:
    """Float32 against float16 packs: the same recipe, seed and folds."""
    a, b = results
    lines = ["| fold | float32 validation UA | float16 validation UA | float32 test UA | float16 test UA |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {fa['fold']} | {fmt(fa['val_best'])} | {fmt(fb['val_best'])} | {fmt(fa['ua'])} | {fmt(fb['ua'])} |"
              for fa, fb in zip(a["folds"], b["folds"])]
    return lines + [f"| mean | {fmt(a['mean_val_best'])} | {fmt(b['mean_val_best'])} | {fmt(a['mean_ua'])} | "
                    f"{fmt(b['mean_ua'])} |", "", f"Commands: `{a['command']}`; `{b['command']}`", ""]


def ddp(results: list[dict], _paths: list[Path]) -> list[str]:
    d = results[0]
    lines = ["| configuration | training clips/s |", "|---|---:|"]
    lines += [f"| {r['processes']} process(es) x {r['threads_per_process']} thread(s) | {r['clips_per_s']:.1f} |"
              for r in d["configurations"]]
    return lines + ["", f"DDP (2 processes) over the best single process: **{d['ddp_over_best_single_process']:.2f}x** "
                    f"(RAVDESS fold 1, medians over {d['configurations'][0]['epochs']} epochs). {d['note']}", "",
                    f"Command: `{d.get('command')}`", ""]


def video_features(results: list[dict], _paths: list[Path]) -> list[str]:
    v = results[0]
    return [f"`{v['extractor']}`: {v['frames_per_s']:.1f} frames/s on CPU; face found on "
            f"{100 * v['face_rate_real_clip']:.0f}% of the real RAVDESS clip's frames.", "",
            f"Command: `{v['command']}`", ""]


def scalars(value, prefix: str = "") -> list[tuple[str, str]]:
    """Every number, string and flag of a JSON object, by its dotted key (lists of numbers joined)."""
    if isinstance(value, dict):
        return [kv for k, v in value.items() if k != "command" for kv in scalars(v, f"{prefix}{k}.")]
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return [(prefix[:-1], ", ".join(f"{v:.4g}" for v in value))]
    if isinstance(value, float):
        return [(prefix[:-1], f"{value:.4g}")]
    if isinstance(value, (int, str, bool)):
        return [(prefix[:-1], str(value))]
    return []


def fields(results: list[dict], _paths: list[Path]) -> list[str]:
    """A result without its own renderer: its fields as they are written."""
    lines = []
    for r in results:
        lines += ["| field | value |", "|---|---|", *(f"| `{k}` | {v} |" for k, v in scalars(r) if len(v) < 200),
                  "", f"Command: `{r.get('command')}`", ""]
    return lines


RENDERERS: dict[str, Renderer] = {
    "cv": cv, "ensemble": ensemble, "loco": loco, "models": models, "av_missing_modality": av_missing_modality,
    "crosscorpus": crosscorpus, "robustness": robustness, "speed_vs_keras": speed_vs_keras, "same_seed": same_seed,
    "code_before_after": code_before_after, "before_after_inference": before_after_inference,
    "class_bias": class_bias, "profile": profile, "use_speed": use_speed, "serve_load": serve_load,
    "throughput": throughput, "store_memory": store_memory, "pack_precision": pack_precision, "ddp": ddp,
    "video_features": video_features, "fields": fields,
}


def load(paths: list[Path]) -> list[dict]:
    return [json.loads(p.read_text()) for p in paths]
