"""`make run`: the whole system locally on embedded defaults.

A real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager, built on
first use), the CRDs, the Kopf operator and the ACME server, all sharing the SQLite store in
./acme-gateway-data. Runs until Ctrl-C, then stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.infra.kube import ControlPlane, ControlPlaneError  # noqa: E402

BIN = ROOT / ".venv" / "bin"


def main() -> int:
    data_dir = Path(os.environ.get("ACME_GATEWAY_DATA_DIR", "./acme-gateway-data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ACME_GATEWAY_DATA_DIR=str(data_dir))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    plane = ControlPlane()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(
            "starting the Kubernetes control plane (first run builds it; ~30 min) ...", flush=True
        )
        plane.start(data_dir / "kube")
        env["KUBECONFIG"] = str(plane.kubeconfig)
        # certbot --standalone on this machine answers http-01 on loopback, which validation
        # refuses unless allowed (ACME_GATEWAY_VALIDATION_ALLOW_CIDR, if set, takes over).
        env.setdefault("ACME_GATEWAY_VALIDATION_ALLOW_CIDR", "127.0.0.0/8 ::1/128")
        # The one migration step (as the chart's init container): the operator only checks
        # the schema revision, so it must not race the server to a fresh store.
        subprocess.run([str(BIN / "acme-gateway"), "store", "migrate"], env=env, check=True)
        procs.append(subprocess.Popen([str(BIN / "acme-gateway"), "serve"], env=env))
        procs.append(subprocess.Popen([str(BIN / "acme-gateway-operator")], env=env))
        time.sleep(3)
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        root = subprocess.run(
            [str(BIN / "acme-gateway"), "ca", "cert"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (data_dir / "root.pem").write_text(root)
        listen = env.get("ACME_GATEWAY_LISTEN", "127.0.0.1:14000")
        print(
            f"""
acme-gateway is running.
  ACME directory : https://{listen}/directory
  trust this root: {data_dir / "root.pem"}
  Kubernetes     : export KUBECONFIG={plane.kubeconfig}
  kubectl        : {BIN / "kubectl"}

Try:  kubectl apply -f docs/examples/registration.yaml
      kubectl get acmeregistrations
      REQUESTS_CA_BUNDLE={data_dir / "root.pem"} {BIN / "certbot"} certonly --standalone \\
        --server https://{listen}/directory -d my.example --http-01-port 80 ...
Press Ctrl-C to stop.""",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        print("a component exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (ControlPlaneError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"devstack failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
