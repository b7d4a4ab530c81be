"""The report: built from whatever stages have run, rendered in headless Chromium with its images loading."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cnnrepro import atomic, params
from cnnrepro.evaluation import plots
from cnnrepro.params import profiles
from cnnrepro.report import build, write_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
# Appended to a copy of the page: after load, record each image's decoded width in the DOM.
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify([...document.images].map(i => [i.getAttribute("src"), i.naturalWidth]));
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Chromium is not installed: run `apt-get install -y chromium` (Debian) to run this test")


def quick_params(root: Path) -> dict:
    profiles.write("quick", REPO, root / "params.yaml")
    return params.read_yaml(root / "params.yaml")


def fake_outputs(root: Path) -> None:
    """Write the outputs of a LeNet-5, DeepFace and GoogLeNet-ensemble run, as the stages lay them out."""
    atomic.write_json(root / "metrics/evaluate/lenet5.json", {"test_error": 0.0125, "test_errors": 25, "test_images": 2000})
    atomic.write_json(root / "metrics/train/lenet5.json", {"epochs": 8, "best_val_error": 0.02})
    plots.write_csv(root / "plots/train/lenet5.csv", ["epoch", "train_loss", "train_error", "val_error"],
                    [[1, 0.9, 0.2, 0.1], [2, 0.5, 0.1, 0.05]])
    plots.confusion_png(np.eye(10), [str(d) for d in range(10)], root / "plots/evaluate/lenet5-confusion.png", "c")
    fpr = np.linspace(0, 1, 20)
    plots.roc_png({"unsupervised": (fpr, np.sqrt(fpr))}, root / "plots/evaluate/deepface-roc.png", "roc")
    protocol = {"protocol": "unsupervised", "outside_data": "labeled outside data", "similarity": "cosine",
                "accuracy": 0.71, "accuracy_se": 0.012, "auc": 0.78, "eer": 0.3, "tar_at_far_1e-3": 0.01,
                "fold_accuracies": [0.7] * 10}
    atomic.write_json(root / "results/deepface/protocols.json", {"view": "view2", "protocols": [protocol]})
    atomic.write_json(root / "metrics/evaluate/deepface.json", {"pairs": 6000, "skipped_pairs": 0})
    rows = [{"models": m, "crops": c, "cost": m * c, "top1_error": 0.3, "top5_error": 0.05} for m in (1, 7) for c in (1, 10)]
    atomic.write_json(root / "results/ensemble-googlenet/grid.json", {"best_single": "googlenet-3", "rows": rows})
    plots.lines_png([1, 10], {"1 model": [0.06, 0.05]}, root / "plots/ensemble/googlenet-grid.png", "g", "c", "e")


def test_report_without_any_stage(tmp_path):
    tree = quick_params(tmp_path)
    out = write_report(tmp_path, tree, "empty")
    page = (out / "index.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert build.NOT_RUN in page, "missing stages must read 'not run' in the HTML"
    assert build.NOT_RUN in markdown, "missing stages must read 'not run' in the Markdown"
    assert "0.95%" in markdown, "the paper's LeNet-5 error must appear even before any run"


def test_report_numbers_beside_paper(tmp_path):
    tree = quick_params(tmp_path)
    fake_outputs(tmp_path)
    markdown = (write_report(tmp_path, tree, "t") / "report.md").read_text(encoding="utf-8")
    assert "| MNIST test error | 0.95% | 1.25% |" in markdown, "LeNet-5 row: paper beside reproduced"
    assert "71.00% ± 1.20%" in markdown, "DeepFace accuracy with its standard error"
    assert re.search(r"\| 7 \| 1 \| 7 \| 8\.09% \| 5\.00% \| 30\.00% \|", markdown), "GoogLeNet Table 3 row 7x1"
    assert "| 7 | 144 | 1008 | 6.67% | not run |" in markdown, "a grid cell that was not run"
    assert "![Confusion matrix on the test images](lenet5-lenet5-confusion.png)" in markdown, "Markdown embeds figures"


def test_report_renders_in_chromium(tmp_path):
    tree = quick_params(tmp_path)
    fake_outputs(tmp_path)
    out = write_report(tmp_path, tree, "render check")
    page = (out / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 4, f"expected the plots as <img> tags, found {sources}"
    probe_page = out / "probe.html"
    probe_page.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")

    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"chromium failed: {result.stderr[-2000:]}"
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe script did not run; DOM tail: {result.stdout[-500:]}"
    widths = dict(json.loads(found.group(1).replace("&quot;", '"')))
    assert set(widths) == set(sources), f"images seen by the browser {sorted(widths)} vs page {sources}"
    for source, width in widths.items():
        assert width > 0, f"{source} did not load in Chromium (naturalWidth 0)"


def test_report_stage_logs_to_mlflow(tmp_path, monkeypatch, mlflow_uri):
    import mlflow

    from pipeline import report as stage

    quick_params(tmp_path)
    fake_outputs(tmp_path)
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.setenv("CNNREPRO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert stage.main([]) == 0, "report stage exit code"
    for name in ("index.html", "report.md", "train-lenet5.png", "deepface-deepface-roc.png"):
        assert (tmp_path / "reports" / name).is_file(), f"reports/{name} written"
    client = mlflow.tracking.MlflowClient(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("cnnrepro").experiment_id])[0]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/index.html" in logged, f"report logged to MLflow: {sorted(logged)}"
