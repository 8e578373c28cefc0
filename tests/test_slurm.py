"""profiles/slurm on a real SLURM cluster: training and evaluation jobs go through sbatch with GPUs.

The cluster is the single-node one of scripts/local-slurm-start.sh (slurmctld + slurmd on
loopback, two fake GPUs backed by /dev/null and /dev/zero), started by .ci/run. When `sbatch`
does not answer, the test starts it itself if it runs as root with apt-get; otherwise it skips,
unless IMAGENOT_REQUIRE_SLURM=1 (set by .ci/run), where it fails. It also skips (or fails) when
the cluster has no GPU GRES or its nodes are not this machine (an HPC login node).

The test profile is profiles/slurm/config.yaml with only its site knobs changed: the cluster's
partition for every rule, CPUs and memory scaled down to one small node, fast status polling,
no retries and the SLURM log files kept. Which rules request GPUs, and everything else, is the
production profile's.

The config is tests/configs/tiny.yaml with one model (ResNet-18) trained on a ready WebDataset
dataset (`source: webdataset`, written by tests/test_data.py's make_dataset_dir), and the target
is the rank-agreement table: train and evaluate through sbatch, the quick rules local. The whole
tiny DAG is a chain of ~12 sbatch jobs of 20-100 s each on a 2-core machine, too slow for the
test suite; tests/test_workflow.py runs it with the local executor.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_data import make_dataset_dir

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts/local-slurm-start.sh"
STOP = ROOT / "scripts/local-slurm-stop.sh"
SNAKEMAKE_TIMEOUT = 420  # seconds; `timeout -k` ends a hung Snakemake (SIGTERM alone waits for jobs)

#: rules the tiny one-model run executes, and which of them go through sbatch
SBATCH_RULES = {"train", "evaluate"}
LOCAL_RULES = {"reference_accuracies", "accuracies", "rank_agreement"}


def run(cmd, timeout=30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def slurm_answers() -> str | None:
    """None when sbatch exists and the controller answers, else why not."""
    for tool in ("sbatch", "squeue", "sinfo", "scontrol"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    try:
        r = run(["scontrol", "ping"], timeout=20)
    except subprocess.TimeoutExpired:
        return "scontrol ping timed out"
    if r.returncode != 0 or "UP" not in r.stdout:
        return f"slurmctld does not answer: {(r.stdout + r.stderr).strip()[:300]}"
    return None


def can_start_local_cluster() -> str | None:
    """None when scripts/local-slurm-start.sh can run here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no apt-get to install slurm-wlm"
    return None


def skip_or_fail(reason: str):
    if os.environ.get("IMAGENOT_REQUIRE_SLURM") == "1":
        pytest.fail(f"IMAGENOT_REQUIRE_SLURM=1 but no usable SLURM cluster: {reason}")
    pytest.skip(f"no SLURM cluster: {reason}")


@pytest.fixture(scope="module")
def slurm_partition():
    """The default partition of a running cluster with GPUs (started here when possible)."""
    started = False
    why = slurm_answers()
    if why is not None:
        cannot = can_start_local_cluster()
        if cannot is not None:
            skip_or_fail(f"{why}, and the local cluster cannot be started ({cannot})")
        r = run([str(START)], timeout=600)
        if r.returncode != 0:
            skip_or_fail(f"{why}; {START.name} failed:\n{(r.stdout + r.stderr)[-2000:]}")
        started = True
        why = slurm_answers()
        if why is not None:
            skip_or_fail(f"started the local cluster but: {why}")
    r = run(["sinfo", "-h", "-o", "%P %a %G"])
    partitions = [line.split() for line in r.stdout.splitlines() if line.strip()]
    default = [p for p in partitions if p[0].endswith("*")] or partitions
    if not default:
        skip_or_fail(f"sinfo lists no partition: {r.stdout} {r.stderr}")
    name, avail, gres = default[0][0].rstrip("*"), default[0][1], " ".join(default[0][2:])
    if avail != "up" or "gpu" not in gres:
        skip_or_fail(f"default partition {name} is {avail} with GRES {gres!r} (needs gpu)")
    # the test's files are in a local temporary directory: only a cluster on this machine sees them
    host = socket.gethostname().split(".")[0]
    nodes = run(["sinfo", "-h", "-N", "-p", name, "-o", "%N"]).stdout.split()
    if host not in nodes:
        skip_or_fail(f"partition {name}'s nodes {nodes} are not this machine ({host}): not a local cluster")
    yield name
    if started:
        run([str(STOP)], timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_test_profile(partition: str, logdir: Path, gpu_cpus: int) -> dict:
    """profiles/slurm/config.yaml with the site knobs set for one small local node."""
    prof = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    resources = [prof["default-resources"], *prof["set-resources"].values()]
    for res in resources:
        if "slurm_partition" in res:
            res["slurm_partition"] = partition
        if "cpus_per_task" in res:
            res["cpus_per_task"] = 1
        if "cpus_per_gpu" in res:
            res["cpus_per_gpu"] = gpu_cpus
        if "mem_mb" in res:
            res["mem_mb"] = min(res["mem_mb"], 1500)
        if "runtime" in res:
            res["runtime"] = min(res["runtime"], 15)
    prof.update({
        "jobs": 4,
        "latency-wait": 5,
        "retries": 0,
        "keep-going": False,
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "slurm-logdir": str(logdir),
    })
    return prof




def scontrol_job(jobid: str) -> dict:
    r = run(["scontrol", "-d", "show", "job", jobid])
    assert r.returncode == 0, f"scontrol show job {jobid}: {r.stderr}"
    fields = dict(re.findall(r"(\w+(?:/\w+)?)=(\S*)", r.stdout))
    fields["_text"] = r.stdout
    return fields


@pytest.mark.slow
def test_train_and_evaluate_go_through_sbatch_with_a_gpu(slurm_partition, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    data = make_dataset_dir(tmp_path / "shards", n_classes=4, per_class={"train": 16, "val": 6, "test": 6})
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["corpus"]["demo"]["port"] = free_port()
    cfg["models"] = {"resnet18": cfg["models"]["resnet18"]}
    cfg["analysis"]["baseline_model"] = "resnet18"
    cfg["datasets"] = {"shapes": {"source": "webdataset", "path": str(data)}}
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))

    profile = tmp_path / "profile"
    profile.mkdir()
    node_cpus = min(int(c) for c in run(["sinfo", "-h", "-p", slurm_partition, "-o", "%c"]).stdout.split())
    gpu_cpus = min(2, node_cpus)  # 2 tells --cpus-per-gpu apart from the default of one CPU
    prof = slurm_test_profile(slurm_partition, work / "slurm_logs", gpu_cpus)
    assert prof["set-resources"]["train"]["gpu"] == 1 and prof["set-resources"]["evaluate"]["gpu"] == 1
    (profile / "config.yaml").write_text(yaml.safe_dump(prof))

    # Jobs are `sbatch --export=ALL`: they inherit this environment. The venv's bin first on
    # PATH is what an activated virtual environment gives: the jobs' shell commands find
    # `imagenot` there.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    targets = ["rank_agreement"]
    cmd = [
        "timeout", "-k", "20", str(SNAKEMAKE_TIMEOUT),
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--profile", str(profile), "--configfile", str(config), "--directory", str(work), *targets,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT + 60)
    seconds = time.perf_counter() - t0
    out = r.stdout + r.stderr
    if r.returncode != 0:
        logs = "\n".join(
            f"== {p}\n{p.read_text(errors='replace')[-1500:]}"
            for p in sorted([*(work / "logs").rglob("*.log"), *(work / "slurm_logs").rglob("*.log")])
        )
        pytest.fail(f"snakemake exited {r.returncode} after {seconds:.0f} s:\n{out[-5000:]}\n{logs[-8000:]}")

    # every job except the local rules went through sbatch, each exactly once, and finished there
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    jobs = {slurm_id: scontrol_job(slurm_id) for slurm_id in submitted}
    rules = {re.fullmatch(r"rule_([a-z_]+?)(_wildcards_.*)?", j["Comment"]).group(1): j for j in jobs.values()}
    assert len(rules) == len(submitted) and set(rules) == SBATCH_RULES, out[-3000:]
    for rule in LOCAL_RULES:
        assert f"localrule {rule}:" in out, f"{rule} did not run on the submit host"
    for rule, j in rules.items():
        assert j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0", j["_text"]
        assert j["Partition"] == slurm_partition
        assert j["Requeue"] == "1"  # slurm-requeue: true
        assert j["WorkDir"] == str(work)

    # train and evaluate asked for one GPU (sbatch --gpus=1) and were given one (JOB_GRES, the
    # allocation that sets CUDA_VISIBLE_DEVICES in the job), with the scaled-down CPUs and memory
    for rule in ("train", "evaluate"):
        j = rules[rule]
        assert j["TresPerJob"] == "gres:gpu:1" and j["JOB_GRES"] == "gpu:1", j["_text"]
        assert j["NumCPUs"] == str(gpu_cpus) and "mem=1500M" in j["TRES"], j["_text"]
        assert j["TimeLimit"] == "00:15:00"

    # each job's SLURM log was written by the job on the node and kept
    slurm_logs = sorted((work / "slurm_logs").rglob("*.log"))
    assert len(slurm_logs) == len(jobs)
    train_log = next(p for p in slurm_logs if "rule_train" in str(p)).read_text()
    assert "imagenot train --model resnet18" in train_log and "Finished jobid" in train_log

    # and the results are real
    acc = pd.read_csv(work / "results/tables/accuracies.csv")
    assert acc["model"].tolist() == ["resnet18"] and acc["dataset"].tolist() == ["shapes"]
    assert acc["n_test"].tolist() == [4 * 6]
    ranks = pd.read_csv(work / "results/tables/rank_agreement.csv")
    assert (ranks["n_models"] == 1).all()
    print(f"slurm: {len(jobs)} sbatch jobs ({', '.join(sorted(rules))}), snakemake {seconds:.0f} s")
