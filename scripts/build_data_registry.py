"""Build orrery's shipped data registry (traces/data_registry.json) from ../shared/data/upstream.toml.

The registry holds facts only (upstream repository, commit, path, URL, sha256 and byte counts,
how a converted file derives from its upstream bytes, licence, citation), so `orrery data fetch`
can rebuild every real data file on a machine without the shared folder. Re-run after
upstream.toml changes:

    python scripts/build_data_registry.py [path/to/upstream.toml]

The two one-week Azure LLM traces of 2024 have no recorded hash (trust on first use): their
sha256 is recorded in the user's cache at the first download and checked afterwards.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "traces" / "data_registry.json"
DEFAULT_UPSTREAM = ROOT / ".." / "shared" / "data" / "upstream.toml"

# Papers that published (or whose artifact published) each file; cite them when you use it.
SPLITWISE = ("Patel et al., Splitwise: Efficient Generative LLM Inference Using Phase Splitting, "
             "ISCA 2024 (Azure LLM inference trace 2023)")
DYNAMOLLM = ("Stojkovic, Zhang, Goiri, Torrellas, Choukse, DynamoLLM: Designing LLM Inference "
             "Clusters for Performance and Energy Efficiency, HPCA 2025, arXiv:2408.00741 "
             "(Azure LLM inference trace 2024)")
SARATHI = ("Agrawal et al., Taming Throughput-Latency Tradeoff in LLM Inference with "
           "Sarathi-Serve, OSDI 2024")
MLENERGY = "Chung et al., The ML.ENERGY Benchmark / ML.ENERGY Leaderboard (ml.energy)"
PERSEUS = ("Chung et al., Perseus: Reducing Energy Bloat in Large Model Training, SOSP 2024")
ZEUS = ("You, Chung, Chowdhury, Zeus: Understanding and Optimizing GPU Energy Consumption of "
        "DNN Training, NSDI 2023")
CHASE = ("Yang, Meng, Chung, Chowdhury, Chasing Low-Carbon Electricity for Practical and "
         "Sustainable DNN Training, ICLR 2023 workshop (Tackling Climate Change with ML)")
DECARB = ("Sukprasert et al., On the Limitations of Carbon-Aware Temporal and Spatial Workload "
          "Shifting in the Cloud, EuroSys 2024 (data: Electricity Maps)")
VENN = ("Liu et al., Venn: Resource Management for Collaborative Learning Jobs, MLSys 2025 "
        "(device data: AI-Benchmark)")
OOBLECK = ("Jang et al., Oobleck: Resilient Distributed Training of Large Models Using Pipeline "
           "Templates, SOSP 2023")
BAMBOO = ("Thorpe et al., Bamboo: Making Preemptible Instances Resilient for Affordable "
          "Training of Large DNNs, NSDI 2023")

# Converted files: the converter (traces/convert.py) that rebuilds each from its upstream pickle.
CONVERTERS = {
    "fl/aibenchmark_device_specs.csv": "venn_device_specs",
    "fl/aibenchmark_eligibility_4req.csv": "venn_eligibility",
}

# Trust-on-first-use datasets: AzureLLMInferenceDataset2024.md (Azure/AzurePublicDataset) lists
# these release assets; schema TIMESTAMP,ContextTokens,GeneratedTokens, one week each
# (code 2024-05-10..16, conversation 2024-05-12..18). Sizes are approximate (not published).
AZURE_2024 = {
    "llm/azure_llm_2024_code_1week.csv": ("AzureLLMInferenceTrace_code_1week.csv", 692_000_000),
    "llm/azure_llm_2024_conv_1week.csv": ("AzureLLMInferenceTrace_conv_1week.csv", 1_130_000_000),
}
AZURE_RELEASE = "https://github.com/Azure/AzurePublicDataset/releases/download/dataset-llm-2024"


def citation(name: str, e: dict) -> str:
    repo, path = e["repo"], e["path"]
    if repo == "Azure/AzurePublicDataset":
        return SPLITWISE
    if repo == "microsoft/sarathi-serve":
        return SARATHI
    if repo == "ml-energy/leaderboard":
        return MLENERGY
    if repo == "ml-energy/zeus":
        if path.startswith("sosp24_data"):
            return PERSEUS
        if "carbon" in path:
            return CHASE
        return ZEUS
    if repo == "umassos/decarbonization-potential":
        return DECARB
    if repo == "SymbioticLab/Venn":
        return VENN
    if repo == "SymbioticLab/Oobleck":
        return OOBLECK + "; traces from " + BAMBOO if "trace" in name else OOBLECK
    if repo == "uclasystem/bamboo":
        return BAMBOO
    raise SystemExit(f"no citation known for {name} ({repo}); add one to {__file__}")


def build(upstream: Path) -> dict:
    raw = tomllib.loads(upstream.read_text(encoding="utf-8"))
    files: dict[str, dict] = {}
    for name, e in sorted(raw.items()):
        entry = {
            "repo": e["repo"],
            "commit": e["commit"],
            "path": e["path"],
            "url": e["url"],
            "upstream_sha256": e["upstream_sha256"],
            "upstream_bytes": e["upstream_bytes"],
            "sha256": e["local_sha256"],
            "bytes": e["local_bytes"],
            "license": e["license"],
            "citation": citation(name, e),
        }
        if e["relation"] == "converted":
            if name not in CONVERTERS:
                raise SystemExit(f"{name} is converted upstream but has no converter here")
            entry["converter"] = CONVERTERS[name]
            entry["convert"] = e["convert"]
        elif e["local_sha256"] != e["upstream_sha256"]:
            raise SystemExit(f"{name}: 'identical' but the hashes differ")
        files[name] = entry
    for name, (asset, approx) in AZURE_2024.items():
        files[name] = {
            "repo": "Azure/AzurePublicDataset",
            "commit": "dataset-llm-2024",  # a release tag: mirrors lay it out as <repo>/<tag>/<asset>
            "path": asset,
            "url": f"{AZURE_RELEASE}/{asset}",
            "upstream_sha256": None,
            "upstream_bytes": None,
            "sha256": None,
            "bytes": None,
            "approx_bytes": approx,
            "license": "CC-BY-4.0",
            "citation": DYNAMOLLM,
            "trust_on_first_use": True,
        }
    return {
        "about": "Generated by scripts/build_data_registry.py from ../shared/data/upstream.toml; "
                 "do not edit by hand.",
        "files": files,
    }


def main(argv: list[str]) -> int:
    upstream = Path(argv[0]) if argv else DEFAULT_UPSTREAM
    reg = build(upstream.resolve())
    OUT.write_text(json.dumps(reg, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(reg['files'])} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
