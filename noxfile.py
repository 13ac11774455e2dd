"""Test, lint and benchmark sessions. `nox -s tests` is the command CI and the README use."""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = "constraints/test.txt"
LOWEST_CONSTRAINTS = "constraints/lowest.txt"
TEST_ENV = {
    # A missing hub weight would otherwise cost ~47 s of retries per test.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # jaxtyping + beartype check every annotated function of the package during tests.
    "METASLOT_TYPECHECK": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}


def _install(session: nox.Session, extras: str = "test", constraints: str = CONSTRAINTS) -> None:
    # torch first, through the constraints file, so pip never reaches for a newer CUDA build.
    session.install("-c", constraints, "torch", "torchvision")
    session.install("-c", constraints, "-e", f".[{extras}]")


def _pytest(session: nox.Session) -> None:
    args = session.posargs or ["-n", "2", "--dist", "loadgroup"]
    session.run("pytest", *args, env=TEST_ENV)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on CPU (GPU-marked tests skip themselves without a device)."""
    _install(session)
    _pytest(session)


@nox.session
def tests_lowest(session: nox.Session) -> None:
    """The whole suite on the lowest versions pyproject.toml allows (constraints/lowest.txt): keeps the
    lower bounds honest. Not run by CI: it downloads an older torch (about 3 GB)."""
    _install(session, constraints=LOWEST_CONSTRAINTS)
    _pytest(session)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "metaslot", "cli", "tests", "examples", "tools", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed benchmarks (prints a table, writes JSON); pass `-- --quick` for the short version."""
    _install(session)
    session.run("python", "-m", "cli.bench", *session.posargs, env={"HF_HUB_OFFLINE": "1"})
