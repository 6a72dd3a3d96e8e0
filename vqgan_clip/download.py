"""Fetch the official VQGAN and CLIP files into data/checkpoints/. Run: python -m vqgan_clip.download NAME [NAME ...]

Nothing in this project downloads anything unless you run this command. NAME is one of SOURCES:
the taming-transformers VQGANs (CompVis' heibox links, as nerdyrodent/VQGAN-CLIP's
download_models.sh: <name>.yaml and <name>.ckpt, 0.4-1 GB), or OpenAI's CLIP ViT-B-32 / ViT-B-16
(clip/clip.py's _MODELS, checked against the SHA-256 in the URL, converted once into
<name>.state_dict.pt). A transfer goes to <file>.part and resumes there (HTTP Range); the file is
checked by size, SHA-256 where published, and a VQGAN by reading it. Offline, it names the URL.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from lab import LabError, exit_on_lab_error
from lab.paths import data_root

_HEIBOX = "https://heibox.uni-heidelberg.de/d/{key}/files/?p=%2F{path}&dl=1"
_OPENAI = "https://openaipublic.azureedge.net/clip/models/{sha}/{name}.pt"
_VQGAN_KEYS = {"vqgan_imagenet_f16_1024": "8088892a516d4e3baf92", "vqgan_imagenet_f16_16384": "a7530b09fed84f80a887",
               "vqgan_gumbel_f8_8192": "2e5662443a6b4307b470"}
_CLIP_SHA256 = {"ViT-B-32": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
                "ViT-B-16": "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"}
# name -> [(file name in data/checkpoints, URL, SHA-256 or "")]
SOURCES: dict[str, list[tuple[str, str, str]]] = {
    **{name: [(f"{name}.yaml", _HEIBOX.format(key=key, path="configs%2Fmodel.yaml"), ""),
              (f"{name}.ckpt", _HEIBOX.format(key=key, path="ckpts%2Flast.ckpt"), "")]
       for name, key in _VQGAN_KEYS.items()},
    **{name: [(f"{name}.pt", _OPENAI.format(sha=sha, name=name), sha)] for name, sha in _CLIP_SHA256.items()},
}
CHUNK = 1 << 20
TIMEOUT_S = 30


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline(url: str, target: Path, reason: object) -> LabError:
    return LabError(f"cannot download {url} ({reason}); you may be offline. Fetch that URL by hand (a browser or "
                    f"curl -L -C - -o {target} '{url}') and save it as {target}, then run this command again")


def fetch(url: str, target: Path, expected_sha256: str = "") -> Path:
    """Download url to target through target.part, resuming a partial file; check size and checksum."""
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "generative-lab"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # the partial file is already whole
            response = None
        else:
            raise LabError(f"{url} answered HTTP {error.code} ({error.reason}); fetch it by hand and save it as "
                           f"{target}") from None
    except (urllib.error.URLError, OSError) as error:
        raise _offline(url, target, getattr(error, "reason", error)) from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if done and not resumed:
                done = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            mode = "ab" if resumed else "wb"
            with open(part, mode) as out, tqdm(total=total, initial=done, unit="B", unit_scale=True,
                                               unit_divisor=1024, desc=target.name) as bar:
                try:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
                except (http.client.IncompleteRead, OSError) as error:
                    out.flush()
                    raise LabError(f"the download of {url} stopped at {part.stat().st_size} bytes ({error}); run "
                                   "the same command again to resume it") from None
        size = part.stat().st_size
        if total is not None and size != total:
            raise LabError(f"the download of {url} stopped at {size} of {total} bytes; run the same command again "
                           "to resume it")
    if expected_sha256 and sha256(part) != expected_sha256:
        part.unlink()
        raise LabError(f"{target.name} does not match its published SHA-256 {expected_sha256[:12]}...; the partial "
                       "file was removed, run the command again")
    os.replace(part, target)
    return target


def finish(name: str, files: list[Path]) -> list[Path]:
    """Check a VQGAN checkpoint by reading it; convert OpenAI's TorchScript CLIP into a state_dict."""
    if name.startswith("vqgan_"):
        from vqgan_clip.vqgan import load_vqgan

        load_vqgan(files[0], files[1])  # the yaml and the ckpt: both read, every tensor in place
        return files
    from vqgan_clip.clip_model import convert_openai_clip

    return [*files, convert_openai_clip(files[0])]


def download(name: str, folder: Path | None = None) -> list[Path]:
    if name not in SOURCES:
        raise LabError(f"unknown model {name!r}; valid names: {', '.join(SOURCES)}")
    folder = folder or data_root() / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    files = [fetch(url, folder / file_name, checksum) for file_name, url, checksum in SOURCES[name]]
    return finish(name, files)


@exit_on_lab_error
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vqgan_clip.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"any of: {', '.join(SOURCES)}")
    parser.add_argument("--folder", type=Path, default=None, help="where to put the files (data/checkpoints/)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SOURCES]
    if unknown:
        raise LabError(f"unknown model(s) {', '.join(unknown)}; valid names: {', '.join(SOURCES)}")
    written = []
    for name in args.names:
        files = download(name, args.folder)
        print(f"{name}: " + ", ".join(str(path) for path in files))
        written += files
    return written


if __name__ == "__main__":
    main()
