"""Turns the global command-line flags into `ProjectOptions` for the loader."""

from __future__ import annotations

from compose.loader.pipeline import ProjectOptions


def project_options(args) -> ProjectOptions:
    return ProjectOptions(
        files=tuple(args.files),
        project_name=args.project_name,
        project_directory=args.project_directory,
        env_files=tuple(args.env_files),
        profiles=tuple(p for item in args.profiles for p in item.split(",") if p),
    )
