"""Write ``docs/results.md`` from the JSON files in ``benchmarks/results/``.

Every number on the page is read from a JSON file written by a benchmark script;
nothing is typed in by hand.  ``make results`` runs the benchmarks, then this script.

    python benchmarks/results_page.py [--out docs/results.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def pm(mean: float, err: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f} ± {err:.{digits}f}"


def verdict(holds: bool) -> str:
    return "agrees" if holds else "**disagrees**"


def source(d: dict, name: str) -> str:
    m = d.get("machine", {})
    return (f"*Source: `benchmarks/results/{name}.json` ({d.get('time', '?')}; {m.get('processor', '?')}, "
            f"torch threads {m.get('torch_threads', '?')}, torch {m.get('torch', '?')}).*")


# ---------------------------------------------------------------------------------------- Boltzmann
def boltzmann(lines: list[str]) -> None:
    d = load("boltzmann_quality")
    lines += ["## Boltzmann machines: PCD > CD-1 (Tieleman 2008), DBM vs RBM (Salakhutdinov & Hinton 2009)", ""]
    if d is None or "fashion_mnist_exact" not in d:
        lines += ["Not run yet: `python benchmarks/boltzmann_quality.py`.", ""]
        return
    cfg, ex = d["config"], d["fashion_mnist_exact"]
    lines += [f"**Exact scores** ({ex['hidden']} hidden units, so log Z is enumerated over 2^{ex['hidden']} "
              f"states): RBMs on the first {cfg['num_train']} statically binarized Fashion-MNIST training "
              f"images, mean exact log-likelihood of {cfg['num_test']} test images (nats), SGD with momentum "
              f"0.5, batch {cfg['batch_size']}, seed {cfg['seed']}.", "",
              "| recipe | CD-1 | PCD | PCD − CD-1 | paper direction |", "|---|---|---|---|---|"]
    for recipe, rc in ex["recipes"].items():
        cd1, pcd = ex[f"{recipe}_cd1"], ex[f"{recipe}_pcd"]
        gap = ex[f"{recipe}_pcd_minus_cd1_nats"]
        lines.append(f"| {recipe}: lr {rc['lr']}, {rc['epochs']} epochs, decay {rc['lr_decay']} | "
                     f"{f(cd1['exact_test_log_likelihood'])} | {f(pcd['exact_test_log_likelihood'])} | "
                     f"{f(gap)} | {verdict(gap > 0)} |")
    if ex["old_pcd_minus_cd1_nats"] <= 0 < ex["new_pcd_minus_cd1_nats"]:
        lines += ["", "With the old recipe's constant learning rate the persistent chains lag behind the changing "
                  "model and PCD loses to CD-1; decaying the learning rate to 0 over the run reverses the ranking, "
                  "as in Tieleman (2008)."]
    lines += ["", f"**log Z estimators against the exact value** (AIS with {cfg['ais_chains']} chains and "
              f"{cfg['ais_steps']} steps per start; error = estimate − exact, nats):", "",
              "| model | AIS from data rates (old default): error ± se, ESS | multi-start `estimate_log_z`: "
              "error ± se | interval (±3 se) holds exact | flagged unreliable |", "|---|---|---|---|---|"]
    for recipe in ex["recipes"]:
        for name in ("cd1", "pcd"):
            r = ex[f"{recipe}_{name}"]
            a, m = r["ais_data_start"], r["ais_multi_start"]
            lines.append(f"| {recipe} {name.upper()} | {pm(a['error'], a['stderr'], 2)}, {f(a['ess'])} | "
                         f"{pm(m['error'], m['stderr'], 2)} | {'yes' if m['interval_contains_exact'] else 'no'} | "
                         f"{'yes' if not m['reliable'] else 'no'} |")
    fm = d.get("fashion_mnist")
    if fm:
        rc = fm["recipe"]
        lines += ["", f"**784×{cfg['hidden']} RBMs and a DBM {cfg['dbm_hidden']}** ({rc['num_train']} training "
                  f"images, {rc['epochs']} epochs, lr {rc['lr']} decayed linearly to 0, momentum "
                  f"{rc['momentum']}, batch {rc['batch_size']}).  AIS: mean over {rc['num_test_ais']} test images "
                  f"with the multi-start log Z.  Sandwich on the first {rc['num_test_raise']} test images: "
                  "RAISE below (conservative), AIS above (log Z minus 3 standard errors).", "",
                  f"| model | AIS estimate ({rc['num_test_ais']} images) | RAISE lower | AIS estimate | AIS upper "
                  "| log Z ± se | AIS reliable | train s |",
                  "|---|---|---|---|---|---|---|---|"]
        for name in ("cd1", "cd10", "pcd"):
            r = fm.get(f"rbm_{name}")
            if r is None:
                continue
            b, a = r["bounds"], r["bounds"]["ais"]
            # files written before the sandwich's upper end moved to log Z - 3 se hold the point estimate
            point = b["estimate_ais"] if "estimate_ais" in b else b["upper_ais"]
            upper = point + 3 * a["stderr"]
            lines.append(f"| RBM {name.upper()} | {f(r['test_log_likelihood_ais'])} | {f(b['lower_raise'])} | "
                         f"{f(point)} | {f(upper)} | {pm(a['log_z'], a['stderr'], 2)} | "
                         f"{'yes' if a['reliable'] else 'no'} | "
                         f"{f(r['train_seconds'], 0)} |")
        if "dbm" in fm:
            r = fm["dbm"]
            lines.append(f"| DBM {'-'.join(map(str, r['sizes']))} (mean-field bound) | "
                         f"{f(r['test_log_likelihood_lower_bound_ais'])} | – | – | – | "
                         f"{pm(r['ais']['log_z'], r['ais']['stderr'], 2)} | {'yes' if r['ais']['reliable'] else 'no'} "
                         f"| {f(r['train_seconds'], 0)} |")
        lines.append("")
        if "pcd_minus_cd1_nats_ais" in fm:
            gap, gap_r = fm["pcd_minus_cd1_nats_ais"], fm["pcd_minus_cd1_nats_raise"]
            lines.append(f"PCD − CD-1: {f(gap)} nats by AIS, {f(gap_r)} nats by RAISE: the paper's direction "
                         f"{verdict(gap > 0 and gap_r > 0)}.")
        if "dbm" in fm and "rbm_cd1" in fm:
            best_rbm = max(fm[f"rbm_{n}"]["test_log_likelihood_ais"] for n in ("cd1", "cd10", "pcd")
                           if f"rbm_{n}" in fm)
            dbm = fm["dbm"]["test_log_likelihood_lower_bound_ais"]
            lines.append(f"DBM lower bound {f(dbm)} against the best RBM's {f(best_rbm)}: DBM > RBM "
                         f"{verdict(dbm > best_rbm)}.")
        lines += ["", "These are short CPU runs (the papers train for hundreds of epochs on all 60,000 images); "
                  "where a direction disagrees that is the first suspect.  Where AIS is flagged unreliable, read "
                  "its log-likelihood as an upper estimate and RAISE's as the lower one."]
    if "digits" in d:
        g = d["digits"]
        lines += ["", "**RBM features for digit classification** (scikit-learn's example, test accuracy): "
                  f"hybridpgm RBM + logistic {f(g['hybridpgm_rbm_logistic_accuracy'], 3)}, scikit-learn "
                  f"BernoulliRBM + logistic {f(g['sklearn_rbm_logistic_accuracy'], 3)}, raw pixels "
                  f"{f(g['raw_pixel_logistic_accuracy'], 3)}."]
    lines += ["", source(d, "boltzmann_quality"), "", "Regenerate: `python benchmarks/boltzmann_quality.py`", ""]


# ---------------------------------------------------------------------------------------- directed
def vae(lines: list[str]) -> None:
    d = load("vae_quality_fashion-mnist")
    lines += ["## VAE and IWAE: IWAE > VAE (Burda et al. 2016)", ""]
    if d is None:
        lines += ["Not run yet.", ""]
        return
    lines += [f"{d['architecture']} on binarized Fashion-MNIST, {d['epochs']} epochs, batch {d['batch_size']}; "
              f"test log-likelihood by importance sampling ({d['eval_samples']} samples, {d['eval_size']} test "
              "images), ± standard error over images.", "", "| objective | test log-likelihood | test ELBO |",
              "|---|---|---|"]
    runs = d["runs"]
    for r in runs:
        lines.append(f"| {r['objective']} | {pm(r['test_log_likelihood'], r['test_log_likelihood_stderr'])} | "
                     f"{f(r['test_elbo'])} |")
    base = next(r for r in runs if r["particles"] == 1)
    best = max((r for r in runs if r["particles"] > 1), key=lambda r: r["test_log_likelihood"])
    gap = best["test_log_likelihood"] - base["test_log_likelihood"]
    ordered = [r["test_log_likelihood"] for r in sorted(runs, key=lambda r: r["particles"])]
    note = ("larger than" if gap > base["test_log_likelihood_stderr"] else "within") + " the standard error over images"
    lines += ["", f"IWAE > VAE: {verdict(gap > 0)} ({best['objective']} {f(gap)} nats above the ELBO, {note}; "
              f"log-likelihood {'rises' if ordered == sorted(ordered) else 'does not rise'} with K).", "",
              source(d, "vae_quality_fashion-mnist"), "",
              f"Regenerate: `python benchmarks/vae_quality.py --epochs {d['epochs']} --eval-size {d['eval_size']}`", ""]


def sbn(lines: list[str]) -> None:
    d = load("sbn_quality")
    lines += ["## Sigmoid belief nets: RWS ≥ WS, NVIL, VIMCO (Bornschein & Bengio 2015)", ""]
    if d is None:
        lines += ["Not run yet.", ""]
        return
    cfg = d["config"]
    lines += [f"SBN {'-'.join(map(str, cfg['hidden']))}, lr {cfg['lr']}, {cfg['particles']} particles, test "
              f"log-likelihood by importance sampling ({cfg['eval_samples']} samples) ± standard error.", ""]
    for name, ds in d["datasets"].items():
        lines += [f"**{name}** ({ds['num_train']} training / {ds['num_test']} test images, {ds['epochs']} epochs)",
                  "", "| objective | test log-likelihood | train s |", "|---|---|---|"]
        objs = ds["objectives"]
        for obj, r in objs.items():
            lines.append(f"| {obj} | {pm(r['test_log_likelihood'], r['stderr'], 2)} | {f(r['train_seconds'], 0)} |")
        rws = objs["rws"]["test_log_likelihood"]
        others = {k: v["test_log_likelihood"] for k, v in objs.items() if k in ("wake-sleep", "nvil", "vimco")}
        lines += ["", f"RWS ≥ WS, NVIL, VIMCO: {verdict(all(rws >= v for v in others.values()))}.", ""]
    lines += [source(d, "sbn_quality"), "",
              "Regenerate: `python benchmarks/sbn_quality.py --threads 1 --lr 3e-3 --dataset-epochs digits=100 "
              "fashion-mnist=3 --num-test 500 --objectives wake-sleep rws nvil vimco iwae-concrete`", ""]


def gan(lines: list[str]) -> None:
    d = load("gan_quality")
    lines += ["## GANs as variational EM: IWGAN ≥ GAN, AAVAE ≥ VAE with 10% of the data (Hu et al. 2018)", ""]
    if d is None:
        lines += ["Not run yet.", ""]
        return
    cfg = d["config"]
    ring, dig, fm = d["ring"], d["digits"], d["fashion_mnist"]
    lines += [f"Mean ± sd over {cfg['seeds']} seeds.", "", "| task | GAN | IWGAN | paper direction |",
              "|---|---|---|---|"]
    for label, a, b in [("ring of 8 Gaussians: modes found", ring["gan"]["modes"], ring["iwgan"]["modes"]),
                        ("ring: high-quality sample fraction", ring["gan"]["high_quality"],
                         ring["iwgan"]["high_quality"]),
                        ("digits: inception score", dig["gan"]["inception_score"], dig["iwgan"]["inception_score"]),
                        ("Fashion-MNIST: inception score", fm["gan"]["inception_score"],
                         fm["iwgan"]["inception_score"])]:
        lines.append(f"| {label} | {pm(a['mean'], a['sd'], 2)} | {pm(b['mean'], b['sd'], 2)} | "
                     f"{verdict(b['mean'] >= a['mean'])} |")
    va = d["vae_vs_aavae"]
    lines += ["", "| digits, test ELBO | VAE | AAVAE | paper direction |", "|---|---|---|---|"]
    for frac in ("10pct", "100pct"):
        a, b = va[f"vae_{frac}"], va[f"aavae_{frac}"]
        claim = verdict(b['test_elbo']['mean'] >= a['test_elbo']['mean']) if frac == "10pct" else "no claim"
        lines.append(f"| {frac.replace('pct', '%')} of the training data ({a['num_train']} images) | "
                     f"{pm(a['test_elbo']['mean'], a['test_elbo']['sd'], 2)} | "
                     f"{pm(b['test_elbo']['mean'], b['test_elbo']['sd'], 2)} | {claim} |")
    lines += ["", "The paper claims AAVAE's gain in the small-data regime only (the 100% row is for reference).  "
              f"On Fashion-MNIST the {cfg['fashion_steps']}-step MLP GANs are far from "
              "converged and neither inception score is meaningful.", "", source(d, "gan_quality"), "",
              f"Regenerate: `python benchmarks/gan_quality.py --seeds {cfg['seeds']} --ring-steps "
              f"{cfg['ring_steps']} --digits-steps {cfg['digits_steps']} --vae-steps {cfg['vae_steps']} "
              f"--ada-steps {cfg['ada_steps']} --fashion-steps {cfg['fashion_steps']}`", ""]


# ---------------------------------------------------------------------------------------- GPs
def row(m: dict) -> str:
    cells = [pm(m["rmse"], m["rmse_sd"], 3), pm(m["nlpd"], m["nlpd_sd"], 2)]
    cells += [pm(m[f"coverage_{c}"], m[f"coverage_{c}_sd"], 2) for c in (50, 80, 95)]
    return " | ".join(cells)


def gp(lines: list[str]) -> None:
    d = load("gp_quality")
    lines += ["## GP-LSTM vs LSTM (Al-Shedivat et al. 2017), DKL vs exact GP (Wilson et al. 2016)", ""]
    if d is None or "config" not in d:
        lines += ["Not run yet: `python benchmarks/gp_quality.py`.", ""]
        return
    cfg = d["config"]
    lines += [f"Library recipes (`train_gp_lstm`, `train_deep_kernel`): the last 20% of the training examples "
              f"held out, early stopping on their NLL (every {cfg['eval_every']} steps, patience "
              f"{cfg['patience']}, at most {cfg['max_steps']} steps), best weights restored.  The LSTM baseline "
              "has the same size and the same validation tail and stopping rule.  One-step-ahead predictions of "
              f"the held-out end of each series; mean ± sd over seeds {d['seeds']}.  A calibrated model covers "
              "0.50 / 0.80 / 0.95 of the targets.", "",
              "| series (held out) | model | RMSE | NLPD | coverage 50% | 80% | 95% |", "|---|---|---|---|---|---|---|"]
    verdicts = []
    for name, s in d["forecasting"].items():
        label = f"{name}{' (√)' if s.get('transform') == 'sqrt' else ''} ({s.get('num_test', '?')})"
        for model in ("gp_lstm", "lstm"):
            m = s["models"][model]
            lines.append(f"| {label} | {model} | {row(m)} |")
        g, l = s["models"]["gp_lstm"], s["models"]["lstm"]
        verdicts.append(f"{name}: GP-LSTM NLPD below LSTM's {verdict(g['nlpd'] < l['nlpd'])}, RMSE no worse "
                        f"{verdict(g['rmse'] <= l['rmse'])}, 95% coverage in [0.85, 0.99] "
                        f"{'yes' if 0.85 <= g['coverage_95'] <= 0.99 else '**no**'}")
    capped = [name for name, s in d["forecasting"].items()
              if s["models"]["gp_lstm"]["best_step"] >= cfg["max_steps"] - cfg["eval_every"]]
    lines += ["", *[f"* {v}." for v in verdicts], "",
              "Al-Shedivat et al. report GP-LSTM below the LSTM in RMSE with calibrated intervals.  Here the "
              "intervals are the point of the recipe and the 95% coverage is what the validation tail buys; "
              "the point forecasts of these small runs (a few hundred windows at most, 16 LSTM units, at most "
              f"{cfg['max_steps']} steps) are not better than the LSTM's, and we have not found why.  Coverage "
              "below nominal at 50% with coverage near nominal at 95% means the errors are heavier-tailed than "
              "Gaussian.  Sunspot numbers are modelled on the square-root scale (their noise grows with the "
              "level); on the raw scale the last 60 years are more volatile than anything in the training years, "
              "and this recipe, whose noise level is fitted with the validation tail held out and chosen by early "
              "stopping, gives 95% intervals that cover clearly less than 0.95 of them (a check run, not in the "
              "JSON).  That is the recipe's setting, not a limit of homoscedastic models: `examples/gp_lstm.py` "
              "trains on the raw scale for a fixed number of steps on every training window, and its intervals "
              "do cover that stretch at its defaults.  Nile and CO2 were not used to choose the recipe."]
    if capped:
        lines += ["", f"On {', '.join(capped)} the validation NLL was still improving at the step limit (training "
                  "ended by `max_steps`, not by early stopping)."]
    if "regression" in d:
        r = d["regression"]
        lines += ["", f"**Regression** ({r['dataset']} data of `examples/deep_kernel.py`):", "",
                  "| model | RMSE | NLPD | coverage 50% | 80% | 95% |", "|---|---|---|---|---|---|"]
        for model, m in r["models"].items():
            lines.append(f"| {model} | {row(m)} |")
        dk, eg = r["models"]["dkl"], r["models"]["exact_gp"]
        lines += ["", f"DKL RMSE below the exact GP's: {verdict(dk['rmse'] < eg['rmse'])}."]
        stopped = [model for model, m in r["models"].items()
                   if "best_step" in m and m["best_step"] >= cfg["max_steps"] - cfg["eval_every"]]
        if stopped:
            lines += ["", f"{' and '.join(stopped)} were still improving at the step limit ({cfg['max_steps']} "
                      "steps: training ended by `max_steps`, not by early stopping)."]
        unvalidated = {model: m["steps"] for model, m in r["models"].items() if "best_step" not in m}
        if unvalidated:
            lines += ["", "Without a validation tail, " + ", ".join(f"{model} trains a fixed {steps:g} steps"
                                                                    for model, steps in unvalidated.items())
                      + "."]
    lines += ["", source(d, "gp_quality"), "", "Regenerate: `python benchmarks/gp_quality.py --seeds "
              + " ".join(map(str, d["seeds"])) + "`", ""]


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DOCS / "results.md"))
    args = parser.parse_args(argv)
    lines = ["# Reproducing the papers' results", "",
             "One table per model family: the direction the original paper reports, what hybridpgm measures "
             "(seeds and error bars as stated), and whether they agree.  The runs are short CPU runs, far "
             "smaller than the papers'; where the direction disagrees the page says so.  Every number below is "
             "read from a JSON file in `benchmarks/results/` by `benchmarks/results_page.py`; `make results` "
             "reruns every benchmark (hours on one CPU core; not part of CI) and rewrites this page.", ""]
    for section in (boltzmann, vae, sbn, gan, gp):
        section(lines)
    out = Path(args.out)
    out.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
