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

    sd = lambda xs: st.stdev(xs) if len(xs) > 1 else 0.0
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
        if i and all(x.get("ceiling") for x in rs):
            ceil = [x["ceiling"]["accuracy"] for x in rs]
            row.update(ceiling_mean=st.mean(ceil), ceiling_sd=sd(ceil),
                       loop_vs_ceiling_mean=st.mean(x["loop_vs_ceiling"]["diff"] for x in rs),
                       loop_vs_ceiling_se=st.mean(x["loop_vs_ceiling"]["se"] for x in rs))
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
    err = lambda key: [r["heldout_se"] if one else r[f"{key}_sd"] for r in rows]
    fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 3.9), gridspec_kw={"width_ratios": [3, 2]})
    ax.errorbar(xs, [r["loop_mean"] for r in rows], yerr=err("loop"), fmt="o-", capsize=4,
                label="loop (teacher + verified self-samples)")
    ax.errorbar([x + 0.04 for x in xs], [r["control_mean"] for r in rows], yerr=err("control"), fmt="s--", capsize=4,
                label="control (same tokens, teacher data only)")
    ceil = [(r["round"], r["ceiling_mean"]) for r in rows if "ceiling_mean" in r]
    if ceil:
        ax.plot([x for x, _ in ceil], [y for _, y in ceil], "^:", color="green",
                label="teacher ceiling (teacher's solutions to the same fresh problems)")
    if all(r.get("pass_at_k") is not None for r in rows):
        ax.plot(xs, [r["pass_at_k"] for r in rows], ":", color="grey", label=f"loop pass@{rows[0]['k']}")
    ab = [r["ablation"]["unfiltered"]["accuracy"] for r in records if r.get("ablation", {}).get("unfiltered")]
    if ab:
        ax.axhline(sum(ab) / len(ab), color="red", lw=0.8, ls="-.", label="round 0 on unfiltered teacher data")
    rm = [r["ablation"]["row_matched"]["accuracy"] for r in records if r.get("ablation", {}).get("row_matched")]
    if rm:
        ax.axhline(sum(rm) / len(rm), color="orange", lw=0.8, ls=":",
                   label="round 0 on unfiltered data, row-matched to the filtered")
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
    from pipelines.report import console, rich_table
    rows = []
    for r in record["rounds"]:
        lp, ct = r["loop"], r["control"]
        s = lp.get("sampled") or {}
        rows.append([f"round {r['round']}", f"{lp['accuracy']:.3f} ± {lp['se']:.3f}",
                     f"{ct['accuracy']:.3f}" if r["round"] else "",
                     f"{r['ceiling']['accuracy']:.3f}" if r.get("ceiling") else "",
                     f"{r['gain']['diff']:+.3f} ± {r['gain']['se']:.3f}" if r["round"] else "",
                     f"{s.get('pass_at_k', 0):.3f} / {s.get('maj_at_k', 0):.3f}" if s else "",
                     " ".join(f"L{k}={v:.2f}" for k, v in lp["by_level"].items()),
                     str(r.get("verified_rows", r["sft_rows"])),
                     f"{r['dpo']['accuracy']:.3f}" if r.get("dpo") else ""])
    ab = record.get("ablation") or {}
    for label, ev, pair, n in (("ablation", ab.get("unfiltered"), ab.get("paired"), ab.get("unfiltered_rows")),
                               ("row-matched", ab.get("row_matched"), ab.get("paired_row_matched"),
                                ab.get("row_matched_rows"))):
        if ev:
            assert pair is not None  # an arm's paired difference is recorded with it
            rows.append([label, f"{ev['accuracy']:.3f} ± {ev['se']:.3f}", "", "",
                         f"{pair['diff']:+.3f} ± {pair['se']:.3f}", "",
                         " ".join(f"L{k}={v:.2f}" for k, v in ev["by_level"].items()), str(n), ""])
    k = record["config"]["eval_k"]
    title = (f"held-out exact match ({record['heldout']['n']} twin-free problems, seed {record['seed']}, "
             f"{record['seconds']:.0f} s; ± = standard error; gain = loop − control, paired; ceiling: "
             f"the teacher's solutions to the loop's fresh problems, same steps; ablation: unfiltered "
             f"teacher data (row-matched: subsampled to the filtered row count), gain = filtered − it)")
    console.print(rich_table(title, ["", "loop pass@1", "control", "ceiling", "gain", f"pass@{k} / maj@{k}",
                                     "by level", "rows", "DPO"], rows))


def print_summary(rows: list[dict]) -> None:
    from pipelines.report import console, rich_table
    out = []
    for r in rows:
        out.append([f"round {r['round']}", f"{r['loop_mean']:.3f} ± {r['loop_sd']:.3f}",
                    f"{r['control_mean']:.3f} ± {r['control_sd']:.3f}",
                    f"{r['gain_mean']:+.3f} ± {r['gain_sd']:.3f}" if r["round"] else "",
                    f"{r['gain_se']:.3f}" if r["round"] else "",
                    f"{r['step_mean']:+.3f} ± {r['step_sd']:.3f} ({r['step_se']:.3f})" if r["round"] else "",
                    f"{r['vs_round0_mean']:+.3f}" if r["round"] else "",
                    f"{r['pass_at_k']:.3f} / {r['maj_at_k']:.3f}" if r.get("pass_at_k") is not None else ""])
    console.print(rich_table(f"{rows[0]['seeds']} seeds, {rows[0]['n']} twin-free held-out problems each "
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
        parts += [f"loop − teacher ceiling at round {r['round']} {z(r['loop_vs_ceiling'])}"
                  for r in rs[-1:] if r.get("loop_vs_ceiling")]
        if rec.get("ablation"):
            parts.append(f"ablation (filtered − unfiltered) {z(rec['ablation']['paired'])}")
            if rec["ablation"].get("paired_row_matched"):
                rm = rec["ablation"]["paired_row_matched"]
                parts.append(f"row-matched (filtered − unfiltered subsampled) {z(rm)}")
        lines.append(f"seed {rec['seed']}: " + "; ".join(parts))
    return "\n".join(lines)


ARMS = (("filtered − unfiltered", "paired"), ("filtered − row-matched unfiltered", "paired_row_matched"),
        ("row-matched − all unfiltered", "row_matched_vs_unfiltered"))


def ablation_summary(records: list[dict]) -> dict:
    """Round 0's arms over seeds: each arm's accuracy and each paired difference, mean ± sd over
    seeds, the mean paired SE, and per seed the difference in SE units (does it hold on every seed?)."""
    import statistics as st
    sd = lambda xs: st.stdev(xs) if len(xs) > 1 else 0.0
    abl = [r["ablation"] for r in records if r.get("ablation")]
    if not abl:
        return {}
    out = {"seeds": [r["seed"] for r in records if r.get("ablation")], "n": abl[0]["filtered"]["n"], "arms": {},
           "diffs": {}}
    for arm, key, rows in (("filtered", "filtered", "filtered_rows"), ("unfiltered", "unfiltered", "unfiltered_rows"),
                           ("row-matched", "row_matched", "row_matched_rows")):
        accs = [a[key]["accuracy"] for a in abl if a.get(key)]
        if len(accs) == len(abl):
            out["arms"][arm] = {"mean": st.mean(accs), "sd": sd(accs), "rows": st.mean(a[rows] for a in abl)}
    for label, key in ARMS:
        ps = [a[key] for a in abl if a.get(key)]
        if len(ps) == len(abl):
            out["diffs"][label] = {"mean": st.mean(p["diff"] for p in ps), "sd": sd([p["diff"] for p in ps]),
                                   "se": st.mean(p["se"] for p in ps),
                                   "z": [round(p["diff"] / p["se"], 1) if p["se"] else None for p in ps]}
    return out


def print_ablation_summary(records: list[dict]) -> None:
    from pipelines.report import console, rich_table
    s = ablation_summary(records)
    if not s:
        return
    rows = [[arm, f"{a['mean']:.3f} ± {a['sd']:.3f}", f"{a['rows']:.0f}", "", ""] for arm, a in s["arms"].items()]
    rows += [[label, "", "", f"{d['mean']:+.3f} ± {d['sd']:.3f} (SE {d['se']:.3f})", " ".join(map(str, d["z"]))]
             for label, d in s["diffs"].items()]
    console.print(rich_table(f"round 0 arms over seeds {s['seeds']} ({s['n']} held-out problems each; mean ± sd over "
                             "seeds; SE = mean paired standard error)",
                             ["arm", "held-out accuracy", "rows", "paired difference", "per seed (SE units)"], rows))


def print_profile(record: dict, workers: int) -> None:
    """Wall time by phase, the side worker's beside it, and the CPU seconds the run cost."""
    by_phase = lambda p: ", ".join(f"{k} {v:.0f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]))
    side = record.get("profile_side")
    print(f"wall time by phase (s): {by_phase(record['profile'])}"
          + (f"; side worker (ablation, control, held-out scoring): {by_phase(side)}" if side else "")
          + f"; total {record['seconds']:.0f} s wall, {record['cpu_seconds']:.0f} s CPU ({workers} process"
          + ("es" if workers > 1 else "") + f" × {record['threads']} thread{'s' if record['threads'] > 1 else ''})")
