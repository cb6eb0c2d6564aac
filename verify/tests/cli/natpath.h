Exact NodePort packet paths and invariants for kube-proxy + Calico clusters

Usage: natpath [OPTIONS] <COMMAND>

Commands:
  parse         Parse a snapshot or one dump file and summarise it
  trace         Trace one packet and its reply across the nodes of a snapshot
  check         Prove the invariant catalog for every packet (SMT), with counterexamples
  merge         Merge the shards of a sharded check into the report and exit code of one run
  diff          Show the packets whose fate differs between two snapshots (SMT, for every packet in
                scope)
  gate          Pass or fail a rule change: invariants, contracts and every packet whose fate
                changed
  kernel-check  Rebuild the snapshot in network namespaces and compare the kernel with the model
                (root)
  collect       Collect a snapshot from a live cluster: every node's dumps and cluster.toml,
                read-only
  generate      Write a snapshot shaped like kube-proxy v1.28 + Calico output, at any scale
  completions   Print a shell completion script
  man           Write the man pages (natpath.1 and one page per subcommand)

Options:
  -q, --quiet         Print nothing on stderr but errors (no progress)
      --color <WHEN>  When to colour the text output (never when NO_COLOR is set) [default: auto]
                      [possible values: auto, always, never]
  -h, --help          Print help (see more with '--help')
  -V, --version       Print version

Exit codes: 0 holds or done, 1 a violation, 2 bad input or usage, 3 unknown or cannot run here.
Docs: docs/snapshot-format.md (input), docs/invariants.md (check), docs/output.md (outputs).
