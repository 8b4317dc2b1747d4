"""Make the bundled T1 brain MR sample (``sample_scans/brain_t1.nii.gz``) from mricron-data.

The sample is the Colin27 T1 (``usr/share/mricron/templates/ch2.nii.gz``) of the Debian
package ``mricron-data`` 1.2.20211006+dfsg-4, copied byte for byte after its SHA-256 is
checked; the package's copyright file goes beside it as ``LICENSE-mricron-data.txt``.
See ``sample_scans/README.md`` for what is known about its origin and licence::

    python scripts/make_brain_sample.py             # apt-get downloads the package itself
    python scripts/make_brain_sample.py --deb mricron-data_1.2.20211006+dfsg-4_all.deb
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "mricron-data"
VERSION = "1.2.20211006+dfsg-4"
MEMBER = "usr/share/mricron/templates/ch2.nii.gz"
COPYRIGHT = "usr/share/doc/mricron-data/copyright"
#: SHA-256 of ch2.nii.gz in that package version.
CH2_SHA256 = "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", type=Path, help=f"the {PACKAGE} .deb (default: apt-get it)")
    parser.add_argument("--out", type=Path, default=REPO / "sample_scans")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        deb = args.deb
        if deb is None:
            subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=work, check=True)
            deb = next(work.glob(f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        source = work / "x" / MEMBER
        if sha256(source) != CH2_SHA256:
            raise SystemExit(f"{source}: SHA-256 {sha256(source)} is not {CH2_SHA256}")
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, args.out / "brain_t1.nii.gz")
        shutil.copyfile(work / "x" / COPYRIGHT, args.out / "LICENSE-mricron-data.txt")
    import nibabel as nib

    image = nib.load(args.out / "brain_t1.nii.gz")
    print(
        f"brain_t1.nii.gz: {image.shape}, {image.get_data_dtype()}, "
        f"{nib.aff2axcodes(image.affine)}, zooms {image.header.get_zooms()}, sha256 {CH2_SHA256}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
