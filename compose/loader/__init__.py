"""The project loader: Compose files in, one canonical project out.

A pipeline of small stages, each a function over plain data (dict / list / str / int / float / bool /
None) so it can be tested alone. `pipeline.load_project` runs them in this order:

Per file (and per YAML document in it):
 1. `yamlparse.parse_yaml`      text -> ParsedDocument(data, marks, tags); YAML 1.2 scalars, `<<`,
                                 duplicate keys rejected, `!reset` / `!override` recorded in `tags`.
 2. `interpolate.interpolate`   `${VAR...}` in values (never keys), then cast by path (ints, bools).
 3. `schema.validate`           the Compose JSON Schema (`schemas/compose-spec.json`); override files
                                 and `extends` sources are not required to be complete.
 4. `canonical.canonicalize`    short syntax -> long syntax (see CANONICAL FORM below). Errors in short
                                 syntax (ports, volumes, durations, byte sizes) are raised here, where the
                                 file position is still exact. Zero-value booleans are dropped.
 5. `pipeline._Loader.apply_include`  loads each included project and adds its resources.
 6. `extends.apply_extends`     resolves `extends` (same file, other files, chains, cycles).
 7. `merge.merge_documents`     folds the file into what came before (Compose merge rules, !reset/!override).
After all files:
 8. `normalize.normalize`       defaults and implied structure (names, default network, implicit
                                 depends_on, build defaults, secret targets, legacy `external.name`).
 9. `paths.resolve_paths`       relative paths made absolute against the project directory.
10. `environment.resolve_service_environment`  env_file contents merged into `environment`, bare keys
                                 resolved from the project environment, `label_file` into `labels`.
11. `profiles.apply_profiles`   drops services whose profiles are not active.
12. `validate.check_project`    semantic rules (unknown references, cycles, port clashes...).
13. `compose.model.Project.from_dict` the typed, immutable model every later layer consumes.

Error positions: every stage that can fail takes `locate: Callable[[Path], Location]` and raises a
`compose.errors.ComposeError` subclass with `path=` the key path and `location=locate(path)`.
Warnings go through `warn: Callable[[str], None]`.

CANONICAL FORM (what stage 5 produces and stages 6-13 consume; it is also exactly what `config` prints,
so every value here is already in the form docker compose prints it):
- services.*.ports        list of {target: int, published?: str, host_ip?: str, protocol: "tcp"|"udp"|...,
                          mode: "ingress"|"host", name?: str, app_protocol?: str}; ranges expanded.
- services.*.expose       list of str.
- services.*.volumes      list of {type: bind|volume|tmpfs|npipe|cluster|image, source?: str, target: str,
                          read_only?: bool, bind?: {create_host_path?: bool, propagation?, selinux?,
                          recursive?}, volume?: {nocopy?, subpath?, labels?}, tmpfs?: {size?: str, mode?},
                          image?: {subpath?}, consistency?}. Short `./a:/b` -> type bind with
                          bind: {create_host_path: true}; `name:/b` and `/b` -> type volume with
                          volume: {}.
- environment, labels, annotations, sysctls, build.args, build.labels, deploy.labels,
  networks.*.labels, volumes.*.labels, ...: dict[str, str | None] (numbers/bools stringified).
- extra_hosts              list of "host=ip" str.
- command, entrypoint      list[str] (a string is shell-split); healthcheck.test list[str]
                          ("CMD-SHELL" prepended to a string).
- durations               Go style str ("1m30s", "500ms"); byte sizes: str of the integer ("52428800").
- depends_on              {svc: {condition: str, required: bool, restart?: true}}; a list becomes
                          this at stage 4, map entries get their defaults in normalize (after the merge).
- booleans                `false` is left out (docker compose's omitempty) except where it means
                          something: depends_on.*.required, init, attach, env_file.*.required,
                          bind.create_host_path, enable_ipv4/ipv6.
- services.*.networks     {name: None | {aliases?: [str], ipv4_address?, ...}}.
- services.*.secrets/configs  list of {source: str, target?: str, uid?: str, gid?: str, mode?: str|int}.
- build                   dict (a string becomes {context: str}).
- env_file                list of {path: str, required: bool, format?: str}; label_file, dns,
                          dns_search, dns_opt, tmpfs: list of str.
- top-level networks/volumes/secrets/configs: dict name -> dict (a null entry becomes {}).
"""
