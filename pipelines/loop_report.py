"""The loop's reporting: one run's table, the table and per-seed lines over seeds, and the plot
of held-out accuracy and gain per round. Reads records as written (record.json), nothing else.
"""
from __future__ import annotations


def summarize(records: list[dict]) -> list[dict]:
    """Per round over seeds: loop and control mean ± sd, the gain (loop − control) mean ± sd and
    its mean paired standard error; the loop's step over its last round (paired, same problems);
    pass@k and maj@k of the loop."""
    import statistics as st

    from synth.evaluate import paired

    sd = lambda xs: st.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    out = []
    for i in range(min(len(r["rounds"]) for r in records)):
        rs = [r["rounds"][i] for r in records]
        loop, ctrl = [x["loop"]["accuracy"] for x in rs], [x["control"]["accuracy"] for x in rs]
        gain = [x["gain"]["diff"] if "gain" in x else 0.0 for x in rs]
        row = {"round": i, "seeds": len(rs), "loop_mean": st.mean(loop), "loop_sd": sd(loop),
               "control_mean": st.mean(ctrl),
               "control_sd": sd(ctrl), "gain_mean": st.mean(gain), "gain_sd": sd(gain),
               "gain_se": st.mean([x["gain"]["se"] for x in rs]) if i else 0.0,
               "heldout_se": st.mean([x["loop"]["se"] for x in rs]), "n": rs[0]["loop"]["n"],
               "vs_round0_mean": st.mean([x["vs_round0"]["diff"] if i else 0.0 for x in rs])}
        if i:  # this round's loop against the last round's, paired on the same problems
            steps = [paired(r["rounds"][i]["loop"]["outcomes"], r["rounds"][i - 1]["loop"]["outcomes"])
                     for r in records]
            row.update(step_mean=st.mean(x["diff"] for x in steps), step_sd=sd([x["diff"] for x in steps]),
                       step_se=st.mean(x["se"] for x in steps))
        smp = [x["loop"].get("sampled") for x in rs]
        if all(smp):
            row.update(k=smp[0]["k"], pass_at_k=st.mean(s["pass_at_k"] for s in smp),
                       maj_at_k=st.mean(s["maj_at_k"] for s in smp))
        dpo = [x["dpo_vs_sft"]["diff"] for x in rs if x.get("dpo_vs_sft")]
        if dpo:
            row["dpo_minus_sft"] = st.mean(dpo)
        out.append(row)
    return out


def plot_rounds(records: list[dict], path: str) -> str:
    """Left: held-out greedy accuracy per round, loop vs control, mean over seeds with sd bars (one
    seed: its standard error). Right: the gain (loop − control) per seed with its paired ±2 SE, the
    number the loop is judged by: seeds differ more in level than in gain, so the left bars overlap
    while every seed's gain clears zero."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = summarize(records)
    xs = [r["round"] for r in rows]
    one = len(records) == 1
    err = lambda key: [r["heldout_se"] if one else r[f"{key}_sd"] for r in rows]  # noqa: E731
    fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 3.9), gridspec_kw={"width_ratios": [3, 2]})
    ax.errorbar(xs, [r["loop_mean"] for r in rows], yerr=err("loop"), fmt="o-", capsize=4,
                label="loop (teacher + verified self-samples)")
    ax.errorbar([x + 0.04 for x in xs], [r["control_mean"] for r in rows], yerr=err("control"), fmt="s--", capsize=4,
                label="control (same tokens, teacher data only)")
    if all(r.get("pass_at_k") is not None for r in rows):
        ax.plot(xs, [r["pass_at_k"] for r in rows], ":", color="grey", label=f"loop pass@{rows[0]['k']}")
    ab = [r["ablation"]["unfiltered"]["accuracy"] for r in records if r.get("ablation", {}).get("unfiltered")]
    if ab:
        ax.axhline(sum(ab) / len(ab), color="red", lw=0.8, ls="-.", label="round 0 on unfiltered teacher data")
    ax.set_xticks(xs, [f"round {x}" for x in xs])
    ax.set_ylabel("held-out exact match (twin-free)")
    ax.set_title(f"{len(records)} seed(s), n={rows[0]['n']} held-out problems; bars: "
                 + ("±1 SE" if one else "±1 sd over seeds"), fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.6)
    later = xs[1:]
    for j, rec in enumerate(records):
        g = [rec["rounds"][i]["gain"] for i in later]
        gx.errorbar([x + 0.06 * (j - (len(records) - 1) / 2) for x in later], [p["diff"] for p in g],
                    yerr=[2 * p["se"] for p in g], fmt="o-", capsize=3, lw=1, ms=4, label=f"seed {rec['seed']}")
    gx.axhline(0, color="black", lw=0.8)
    gx.set_xticks(later, [f"round {x}" for x in later])
    gx.set_ylabel("gain = loop − control")
    gx.set_title("paired on the same problems; bars: ±2 SE", fontsize=9)
    gx.legend(fontsize=7, loc="upper left", framealpha=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(record: dict) -> None:
    from pipelines.report import _table, console
    rows = []
    for r in record["rounds"]:
        lp, ct = r["loop"], r["control"]
        s = lp.get("sampled") or {}
        rows.append([f"round {r['round']}", f"{lp['accuracy']:.3f} ± {lp['se']:.3f}",
                     f"{ct['accuracy']:.3f}" if r["round"] else "",
                     f"{r['gain']['diff']:+.3f} ± {r['gain']['se']:.3f}" if r["round"] else "",
                     f"{s.get('pass_at_k', 0):.3f} / {s.get('maj_at_k', 0):.3f}" if s else "",
                     " ".join(f"L{k}={v:.2f}" for k, v in lp["by_level"].items()),
                     str(r.get("verified_rows", r["sft_rows"])),
                     f"{r['dpo']['accuracy']:.3f}" if r.get("dpo") else ""])
    if record.get("ablation"):
        ab = record["ablation"]
        rows.append(["ablation", f"{ab['unfiltered']['accuracy']:.3f} ± {ab['unfiltered']['se']:.3f}", "",
                     f"{ab['paired']['diff']:+.3f} ± {ab['paired']['se']:.3f}", "",
                     " ".join(f"L{k}={v:.2f}" for k, v in ab["unfiltered"]["by_level"].items()),
                     str(ab["unfiltered_rows"]), ""])
    k = record["config"]["eval_k"]
    console.print(_table(f"held-out exact match ({record['heldout']['n']} twin-free problems, seed {record['seed']}, "
                         f"{record['seconds']:.0f} s; ± = standard error; gain = loop − control, paired; ablation: "
                         f"unfiltered teacher data, gain = filtered − unfiltered)",
                         ["", "loop pass@1", "control", "gain", f"pass@{k} / maj@{k}", "by level", "rows", "DPO"],
                         rows))


def print_summary(rows: list[dict]) -> None:
    from pipelines.report import _table, console
    out = []
    for r in rows:
        out.append([f"round {r['round']}", f"{r['loop_mean']:.3f} ± {r['loop_sd']:.3f}",
                    f"{r['control_mean']:.3f} ± {r['control_sd']:.3f}",
                    f"{r['gain_mean']:+.3f} ± {r['gain_sd']:.3f}" if r["round"] else "",
                    f"{r['gain_se']:.3f}" if r["round"] else "",
                    f"{r['step_mean']:+.3f} ± {r['step_sd']:.3f} ({r['step_se']:.3f})" if r["round"] else "",
                    f"{r['vs_round0_mean']:+.3f}" if r["round"] else "",
                    f"{r['pass_at_k']:.3f} / {r['maj_at_k']:.3f}" if r.get("pass_at_k") is not None else ""])
    console.print(_table(f"{rows[0]['seeds']} seeds, {rows[0]['n']} twin-free held-out problems each "
                         "(mean ± sd over seeds; SE = mean paired standard error of the gain)",
                         ["", "loop", "control", "gain (loop − control)", "SE", "loop − last round (SE)",
                          "loop − round 0",
                          f"loop pass@{rows[0].get('k', '')} / maj"], out))


def per_seed_lines(records: list[dict]) -> str:
    """Per seed, each paired difference with its z (difference / SE): whether it holds on every seed."""
    from synth.evaluate import paired

    def z(p: dict) -> str:
        z = f"({p['diff'] / p['se']:.1f} SE)" if p["se"] else "(no variance)"
        return f"{p['diff']:+.3f} ± {p['se']:.3f} {z}"

    lines = []
    for rec in records:
        rs = rec["rounds"]
        parts = [f"round {r['round']}: gain {z(r['gain'])}, step "
                 f"{z(paired(r['loop']['outcomes'], rs[i]['loop']['outcomes']))}" for i, r in enumerate(rs[1:])]
        if rec.get("ablation"):
            parts.append(f"ablation (filtered − unfiltered) {z(rec['ablation']['paired'])}")
        lines.append(f"seed {rec['seed']}: " + "; ".join(parts))
    return "\n".join(lines)


def print_profile(record: dict, workers: int) -> None:
    """Wall time by phase, the side worker's beside it, and the CPU seconds the run cost."""
    by_phase = lambda p: ", ".join(f"{k} {v:.0f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]))  # noqa: E731
    side = record.get("profile_side")
    print(f"wall time by phase (s): {by_phase(record['profile'])}"
          + (f"; side worker (ablation, control, held-out scoring): {by_phase(side)}" if side else "")
          + f"; total {record['seconds']:.0f} s wall, {record['cpu_seconds']:.0f} s CPU ({workers} process"
          + ("es" if workers > 1 else "") + f" × {record['threads']} thread{'s' if record['threads'] > 1 else ''})")
