"""The files generated from the code: the configuration reference, the sample file, both
man pages and the shell completions. ``scripts/generate-docs`` writes them; a unit test
compares them with the committed files, so none can drift from the code."""

from __future__ import annotations

from tlspolicy import __version__
from tlspolicy.cli.main import SHELLS, build_parser, completion_script
from tlspolicy.cli.manpage import manpage
from tlspolicy.config import reference

COMPLETION_FILES = {
    "bash": "contrib/completion/tlspolicy.bash",
    "zsh": "contrib/completion/_tlspolicy",
}


def generated_files(*, completions: bool = True) -> dict[str, str]:
    """Path below the repository -> content. ``completions`` needs shtab."""
    files = {
        "docs/configuration.md": reference.markdown(),
        "contrib/tlspolicy.yml": reference.sample(),
        "man/tlspolicy.yml.5": reference.manpage(__version__),
        "man/tlspolicy.8": manpage(build_parser(), __version__),
    }
    if completions:
        for shell in SHELLS:
            files[COMPLETION_FILES[shell]] = completion_script(build_parser(), shell)
    return files
