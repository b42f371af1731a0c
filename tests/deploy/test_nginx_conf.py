"""deploy/nginx/dianfei.conf is a configuration nginx accepts — on the nginx a Debian 12 server
installs (1.22: no ``http2 on;``) — with the callbacks' front door (per-source limit, 64 KiB
bodies) in it. ``nginx -t`` on a copy whose certificate paths point at a throw-away pair."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "dianfei.conf"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dianfei.example.gov.cn")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    crt, pem = folder / "dianfei.crt", folder / "dianfei.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def test_the_shipped_nginx_configuration_is_accepted(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    text = CONF.read_text(encoding="utf-8")
    # the front door for the callbacks is in the shipped file, not only in the benchmark
    assert "limit_req zone=callbacks" in text and "client_max_body_size 64k" in text
    crt, pem = _self_signed(tmp_path)
    site = tmp_path / "dianfei.conf"
    site.write_text(text.replace("/etc/nginx/tls/dianfei.crt", str(crt))
                    .replace("/etc/nginx/tls/dianfei.key", str(pem)), encoding="utf-8")
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{ include {site}; }}\n",
                    encoding="utf-8")
    out = subprocess.run([nginx, "-t", "-c", str(main), "-p", str(tmp_path), "-e",
                          str(tmp_path / "error.log")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
