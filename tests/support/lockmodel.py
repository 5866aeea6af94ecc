"""An exhaustive model of the workspace lock and commit protocol (v2, and v1 for contrast).

Why: a stress test only samples interleavings; this enumerates all of them for a
few processes. The server is a dict of paths (directories and files); every
process is a state machine whose steps are single server requests (rename,
replace, stat, read, remove, rmdir, write), each atomic, interleaved in every
possible order. Pauses need no modelling (a paused process is one that is not
scheduled); a crash is a process that stops for good at any step. Breakers may
break the lock at any moment, as if every lock looked stale (the worst case).

Properties (protocol-v2 brief):
  P1  committed transactions read 0, 1, 2, ... in commit order and, once what is
      committed is applied, a == b == number of commits (no lost update)
  P2  no committed transaction read a != b; no holder that kept the lock through
      both reads read a != b (no torn read)
  P3  a transaction has a rolled_back record iff its commit point failed
  P4  with no crash: at the end no lock, no K, nothing left but the two files;
      no holder stuck

Steps touching only a process's private paths (its candidate directory, its
stale directory) are merged into one step: no other process can observe them
in between, so this loses no interleaving that matters.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

L, K = "L", "K"
DIR = ("d",)
OWNER = "owner"
FILES = ("a", "b")
MAX_ROLLS = 3  # roll-forward rounds before a holder counts as stuck (P4)


@dataclass(frozen=True)
class Config:
    """Which protocol, how many processes, how much failure."""

    holders: int = 2
    breakers: int = 2
    retries: int = 2  # new attempts after a failed commit point
    breaks_each: int = 1
    crashes: int = 0  # holders that may crash in one run
    protocol: str = "v2"  # "v2" or "v1"
    roll_forward: bool = True  # v2 H3: finish a committed transaction before reading
    commit_dir: bool = True  # v2 H6: rename the txn directory to K; False: rename temps out of L one by one
    token_names: bool = True  # temp and manifest names carry the transaction's token
    pipelined: bool = True  # H7-H9 are sent with H6, whatever its reply
    # mavps/store.py as built: a hard link `L/a.<t>.bak` (the previous copy) made in round trip 3 and moved to
    # a.bak in the commit batch, releases fenced through `L/held.<t>/..`, an abort that removes the link.
    # "unfenced": the link made at `L/a.<t>.bak`; "fenced": at `L/held.<t>/../a.<t>.bak`; "": no link.
    bak: str = ""


class Holder(NamedTuple):
    pc: str
    attempt: int
    ra: int | None = None
    rb: int | None = None
    aux: Any = None
    held: bool = False  # ghost: held the lock at its first read
    committed: bool = False
    rolls: int = 0


class Breaker(NamedTuple):
    pc: str
    left: int
    n: int = 0
    judged: Any = None


class State(NamedTuple):
    fs: frozenset
    procs: tuple
    log: frozenset  # ("rec", t): the txn's records; ("rb", t): its rolled_back note
    commits: tuple  # ghost: (token, a read, b read) per successful commit point, in order
    crashes: int


@dataclass
class Result:
    states: int = 0
    transitions: int = 0
    finals: int = 0
    seconds: float = 0.0
    violations: dict[str, list[str]] = field(default_factory=dict)  # kind -> shortest trace found
    counts: dict[str, int] = field(default_factory=dict)  # kind -> states where it was seen
    outcomes: dict[str, int] = field(default_factory=dict)
    retried: int = 0  # final states where some holder's commit point failed and it retried

    def add(self, kind: str, trace: list[str]) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind not in self.violations or len(trace) < len(self.violations[kind]):
            self.violations[kind] = trace


# ----- the server ----------------------------------------------------------
def _parent_ok(fs: dict, p: str) -> bool:
    par = p.rpartition("/")[0]
    return par == "" or fs.get(par) == DIR


def _under(fs: dict, p: str) -> list[str]:
    pre = p + "/"
    return [q for q in fs if q.startswith(pre)]


def rename(fs: dict, src: str, dst: str) -> bool:
    """OpenSSH plain rename: refuses an existing target."""
    if src not in fs or dst in fs or not _parent_ok(fs, dst):
        return False
    for q in [src] + _under(fs, src):
        fs[dst + q[len(src):]] = fs.pop(q)
    return True


def replace(fs: dict, src: str, dst: str) -> bool:
    """posix-rename of a file: replaces the target atomically."""
    node = fs.get(src)
    if node is None or node[0] != "f" or fs.get(dst, ("f",))[0] != "f" or not _parent_ok(fs, dst):
        return False
    fs[dst] = fs.pop(src)
    return True


def remove(fs: dict, p: str) -> bool:
    if fs.get(p, DIR)[0] != "f":
        return False
    del fs[p]
    return True


def rmdir(fs: dict, p: str) -> bool:
    if fs.get(p) != DIR or _under(fs, p):
        return False
    del fs[p]
    return True


def read(fs: dict, p: str) -> Any:
    node = fs.get(p)
    return node[2] if node is not None and node[0] == "f" else None


def write_handle(fs: dict, inode: tuple, content: Any) -> None:
    """A write through a handle opened earlier: lands wherever the file now is (nowhere if removed)."""
    for q, node in fs.items():
        if node[0] == "f" and node[1] == inode:
            fs[q] = ("f", inode, content)
            return


def remove_tree(fs: dict, p: str) -> list[str]:
    names = sorted(_under(fs, p), key=len, reverse=True)
    for q in names:
        del fs[q]
    fs.pop(p, None)
    return names


# ----- names -----------------------------------------------------------------
def token(i: int, attempt: int) -> str:
    return f"{i}.{attempt}"


def tmp_name(cfg: Config, f: str, t: str) -> str:
    return f"{f}.{t}.tmp" if cfg.token_names or cfg.protocol == "v1" else f"{f}.tmp"


def man_name(cfg: Config, t: str) -> str:
    return f"manifest.{t}" if cfg.token_names else "manifest"


def txn_dir(t: str) -> str:
    return f"txn.{t}"


def txn_base(cfg: Config, at: str, t: str) -> str:
    """Where a holder's temp files are, under a lock-like directory `at`."""
    return f"{at}/{txn_dir(t)}" if cfg.protocol == "v2" else at


def tokens_in(cfg: Config, names: list[str], at: str) -> set[str]:
    """Transactions whose uncommitted temp files are in `at` (what a breaker marks rolled back)."""
    out = set()
    for q in names:
        rest = q[len(at) + 1:]
        if cfg.protocol == "v2" and rest.startswith("txn.") and "/" not in rest:
            out.add(rest[4:])
        if cfg.protocol == "v1" and rest.endswith(".tmp"):
            out.add(rest.split(".", 1)[1][:-4])
    return out


# ----- holders ---------------------------------------------------------------
def holder_steps(cfg: Config, i: int, h: Holder, fs: dict) -> list[tuple[str, Holder, dict, set, Any]]:
    """(label, new local state, new fs, log additions, event) for each possible next step."""
    t = token(i, h.attempt)
    cand = f"C.{t}"
    fs = dict(fs)
    pc = h.pc
    out: list[tuple[str, Holder, dict, set, Any]] = []

    def go(label: str, **kw: Any) -> None:
        out.append((label, h._replace(**kw), fs, set(), None))

    if pc == "h2":  # a failed rename changes nothing: the holder waits until L is free
        if L not in fs:  # H1 (private: candidate, owner, txn dir, empty temps and manifest) and H2
            base = txn_base(cfg, cand, t)
            fs[cand] = DIR
            fs[f"{cand}/{OWNER}"] = ("f", (t, OWNER), t)
            if cfg.bak:
                fs[f"{cand}/held.{t}"] = DIR
            if cfg.protocol == "v2":
                fs[base] = DIR
                fs[f"{base}/{man_name(cfg, t)}"] = ("f", (t, "man"), None)
            for f in FILES:
                fs[f"{base}/{tmp_name(cfg, f, t)}"] = ("f", (t, f), None)
            rename(fs, cand, L)
            go(f"H1+H2 candidate {cand}, rename {cand}->L ok",
               pc="h3" if cfg.protocol == "v2" and cfg.roll_forward else "h4a")
    elif pc == "h3":
        go(f"H3 stat K: {'exists' if K in fs else 'absent'}", pc="r1" if K in fs else "h4a")
    elif pc == "r1":
        mans = sorted(q for q in _under(fs, K) if q.rpartition("/")[2].startswith("manifest"))
        content = read(fs, mans[0]) if mans else None
        if content is None:
            go("R1 no manifest in K", pc="r4")
        else:
            go(f"R1 read {mans[0]}", pc="r2", aux=(mans[0], content, 0))
    elif pc == "r2":
        man, content, k = h.aux
        src, dst = content[k]
        ok = replace(fs, f"{K}/{src}", dst)
        nxt = dict(pc="r2", aux=(man, content, k + 1)) if k + 1 < len(content) else dict(pc="r3", aux=man)
        go(f"R2 replace K/{src}->{dst} {'ok' if ok else 'ENOENT'}", **nxt)
    elif pc == "r3":
        ok = remove(fs, h.aux)
        go(f"R3 remove {h.aux} {'ok' if ok else 'failed'}", pc="r4", aux=None)
    elif pc == "r4":
        ok = rmdir(fs, K)
        if h.rolls + 1 >= MAX_ROLLS:
            go(f"R3 rmdir K {'ok' if ok else 'failed'}: stuck", pc="done", aux="stuck")
        else:
            go(f"R3 rmdir K {'ok' if ok else 'failed'}", pc="h3", rolls=h.rolls + 1)
    elif pc == "h4a":
        go(f"H4 read a={read(fs, 'a')}", pc="h4b", ra=read(fs, "a"), held=_holds(cfg, fs, t))
    elif pc == "h4b":  # read b, then H5: write the temps and the manifest, log the records
        rb = read(fs, "b")
        torn = h.held and _holds(cfg, fs, t) and rb != h.ra
        # Writes through handles opened in H1 land wherever those files now are; no one reads
        # them before this holder's own commit point, and log records are a set: so this is
        # one step (a crash between the reads and the log write leaves nothing to check).
        write_handle(fs, (t, "a"), h.ra + 1)
        write_handle(fs, (t, "b"), rb + 1)
        if cfg.protocol == "v2":
            write_handle(fs, (t, "man"), tuple((tmp_name(cfg, f, t), f) for f in FILES))
        out.append((f"H4 read b={rb}; H5 write temps a={h.ra + 1} b={rb + 1}, log records",
                    h._replace(pc="h5l" if cfg.bak else "h6", rb=rb), fs, {("rec", t)},
                    ("torn read under the lock", None) if torn else None))
    elif pc == "h6":
        out += _commit_point(cfg, t, h, fs)
    elif pc == "h5l":  # round trip 3: link the previous copy into the lock, fenced or not
        path = f"{L}/a.{t}.bak"
        allowed = f"{L}/held.{t}" in fs if cfg.bak == "fenced" else L in fs
        ok = allowed and path not in fs
        if ok:
            fs[path] = ("f", ("bak", t), read(fs, "a"))
        go(f"H5 link a->{'L/held../' if cfg.bak == 'fenced' else 'L/'}a.{t}.bak {'ok' if ok else 'failed'}", pc="h6")
    elif pc in ("c2", "h7a", "h7b", "h7c", "h8a", "h8b", "h9a", "h9h", "h9b", "ab1", "ab2"):
        out += _after_commit(cfg, t, h, fs)
    return out


def _failed(cfg: Config, t: str, h: Holder) -> tuple[str, Holder, set]:
    """H6 failed: log rolled_back, then retry with a new token (or give up)."""
    if h.attempt >= cfg.retries:
        return "; H6 had failed: log rolled_back, give up", h._replace(pc="done", aux="lost"), {("rb", t)}
    nxt = h._replace(pc="h2", attempt=h.attempt + 1, ra=None, rb=None, aux=None, held=False, rolls=0)
    return "; H6 had failed: log rolled_back, retry", nxt, {("rb", t)}


def _holds(cfg: Config, fs: dict, t: str) -> bool:
    """Ghost: L is still this attempt's lock (its uncommitted files are in it)."""
    if cfg.protocol == "v2":
        return f"{L}/{txn_dir(t)}" in fs
    return f"{L}/{tmp_name(cfg, 'a', t)}" in fs


def _commit_point(cfg: Config, t: str, h: Holder, fs: dict) -> list:
    if cfg.protocol == "v2" and cfg.commit_dir:
        ok = rename(fs, f"{L}/{txn_dir(t)}", K)
        label = f"H6 rename L/txn.{t}->K {'ok' if ok else 'failed'}"
        if not ok and not cfg.pipelined:
            label, nh, logs = _failed(cfg, t, h)
            return [(f"H6 rename L/txn.{t}->K failed" + label, nh, fs, logs, None)]
        nxt = "h7a"
    else:  # temps renamed out of the lock one by one; v1: last rename is the commit point
        first = "a" if cfg.protocol == "v2" else "b"
        base = txn_base(cfg, L, t)
        ok = replace(fs, f"{base}/{tmp_name(cfg, first, t)}", first)
        label = f"C1 replace {base}/{tmp_name(cfg, first, t)}->{first} {'ok' if ok else 'failed'}"
        nxt = "c2"
        if cfg.protocol == "v1":
            return [(label, h._replace(pc=nxt), fs, set(), None)]
    event = ("commit", (t, h.ra, h.rb)) if ok else None
    return [(label, h._replace(pc=nxt, committed=ok), fs, set(), event)]


def _after_commit(cfg: Config, t: str, h: Holder, fs: dict) -> list:
    pc = h.pc
    if pc == "c2":
        second = "b" if cfg.protocol == "v2" else "a"
        base = txn_base(cfg, L, t)
        ok = replace(fs, f"{base}/{tmp_name(cfg, second, t)}", second)
        label = f"C2 replace {base}/{tmp_name(cfg, second, t)}->{second} {'ok' if ok else 'failed'}"
        if cfg.protocol == "v2":  # the txn directory is left with the manifest only
            remove(fs, f"{base}/{man_name(cfg, t)}")
            rmdir(fs, base)
            label += ", remove the manifest, rmdir the txn dir"
        if cfg.protocol == "v1":  # the commit point
            event = ("commit", (t, h.ra, h.rb)) if ok else None
            return [(label, h._replace(pc="h9a", committed=ok), fs, set(), event)]
        return [(label, h._replace(pc="h9a"), fs, set(), None)]
    if pc in ("h7a", "h7b"):
        f = "a" if pc == "h7a" else "b"
        ok = replace(fs, f"{K}/{tmp_name(cfg, f, t)}", f)
        return [(f"H7 replace K/{tmp_name(cfg, f, t)}->{f} {'ok' if ok else 'ENOENT'}",
                 h._replace(pc="h7b" if pc == "h7a" else "h7c" if cfg.bak else "h8a"), fs, set(), None)]
    if pc == "h7c":
        ok = replace(fs, f"{L}/a.{t}.bak", "a.bak")
        return [(f"H7 replace L/a.{t}.bak->a.bak {'ok' if ok else 'failed'}", h._replace(pc="h8a"), fs, set(), None)]
    if pc == "h8a":
        ok = remove(fs, f"{K}/{man_name(cfg, t)}")
        return [(f"H8 remove K/{man_name(cfg, t)} {'ok' if ok else 'failed'}", h._replace(pc="h8b"), fs, set(), None)]
    if pc == "h8b":
        ok = rmdir(fs, K)
        return [(f"H8 rmdir K {'ok' if ok else 'failed'}", h._replace(pc="h9a"), fs, set(), None)]
    if pc == "h9a":
        held = f"{L}/held.{t}"
        ok = (held in fs or not cfg.bak) and remove(fs, f"{L}/{OWNER}")
        return [(f"H9 remove L/{'held../' if cfg.bak else ''}owner {'ok' if ok else 'failed'}",
                 h._replace(pc="h9h" if cfg.bak else "h9b"), fs, set(), None)]
    if pc == "h9h":
        ok = rmdir(fs, f"{L}/held.{t}")
        return [(f"H9 rmdir L/held.{t} {'ok' if ok else 'failed'}", h._replace(pc="h9b"), fs, set(), None)]
    if pc == "ab1":  # the abort after LockLost: its own link, by a path that is not fenced
        ok = remove(fs, f"{L}/a.{t}.bak")
        return [(f"abort: remove L/a.{t}.bak {'ok' if ok else 'failed'}", h._replace(pc="ab2"), fs, set(), None)]
    ok = rmdir(fs, L)
    label = f"{'abort: ' if pc == 'ab2' else 'H9 '}rmdir L {'ok' if ok else 'failed'}"
    orphan = _orphan(fs) if not ok and pc == "h9b" and h.committed else None
    if h.committed:
        return [(label, h._replace(pc="done", aux="committed"), fs, set(), orphan)]
    if cfg.bak and pc == "h9b":
        return [(label, h._replace(pc="ab1"), fs, set(), None)]
    more, nh, logs = _failed(cfg, t, h)
    return [(label + more, nh, fs, logs, None)]


def _orphan(fs: dict) -> tuple[str, str] | None:
    """A release that could not remove L because of someone else's file in it leaves a lock with no owner:
    every waiter then waits a whole lease and breaks it (a live system judged stale)."""
    inside = [q[len(L) + 1:] for q in _under(fs, L)]
    if L in fs and OWNER not in inside and not any(n.startswith(("held.", "txn.")) for n in inside):
        return ("lock left without an owner by a release", f"L holds only {inside}")
    return None


# ----- breakers --------------------------------------------------------------
def breaker_steps(cfg: Config, j: int, b: Breaker, fs: dict) -> list[tuple[str, Breaker, dict, set, Any]]:
    fs = dict(fs)
    stale = f"S.{j}.{b.n}"
    out: list[tuple[str, Breaker, dict, set, Any]] = []
    if b.pc == "idle":
        if L in fs and cfg.protocol == "v2":  # B1 judged stale (any lock may look stale); B2, then B3/B4
            rename(fs, L, stale)  # what it took is its own now: B3/B4 are private, so one step
            names = remove_tree(fs, stale)
            dead = tokens_in(cfg, names, stale)
            nxt = _maybe_done(b._replace(left=b.left - 1, n=b.n + 1))
            out.append((f"B2 rename L->{stale} ok; B3/B4 roll back {sorted(dead)}, remove it", nxt, fs,
                        {("rb", t) for t in dead}, None))
        elif L in fs:  # v1 B1: note which holder it judges stale
            owner = read(fs, f"{L}/{OWNER}")
            out.append((f"B1 judge L stale (owner {owner})", b._replace(pc="take", judged=owner), fs, set(), None))
    elif b.pc == "take":  # v1
        ok = rename(fs, L, stale)
        nxt = b._replace(pc="check") if ok else b._replace(pc="idle", left=b.left - 1, judged=None)
        out.append((f"B2 rename L->{stale} {'ok' if ok else 'failed'}", _maybe_done(nxt), fs, set(), None))
    elif b.pc == "check":  # v1: took what it judged? otherwise put it back
        owner = read(fs, f"{stale}/{OWNER}")
        if owner == b.judged:
            out.append((f"B3 took owner {owner}: the judged lock", b._replace(pc="clean"), fs, set(), None))
        else:
            ok = rename(fs, stale, L)
            nxt = b._replace(pc="idle", left=b.left - 1, n=b.n + 1, judged=None) if ok else b._replace(pc="clean")
            out.append((f"B3 took owner {owner}, not {b.judged}: restore {'ok' if ok else 'failed'}",
                        _maybe_done(nxt), fs, set(), None))
    elif b.pc == "clean":  # private: B3 note unfinished transactions, B4 remove what it took
        names = remove_tree(fs, stale)
        dead = tokens_in(cfg, names, stale)
        nxt = _maybe_done(b._replace(pc="idle", left=b.left - 1, n=b.n + 1, judged=None))
        out.append((f"B3/B4 roll back {sorted(dead)}, remove {stale}", nxt, fs, {("rb", t) for t in dead}, None))
    return out


def _maybe_done(b: Breaker) -> Breaker:
    return b._replace(pc="done") if b.left <= 0 and b.pc == "idle" else b


# ----- the search ------------------------------------------------------------
def initial(cfg: Config) -> State:
    fs = {f: ("f", ("init", f), 0) for f in FILES}
    procs = tuple([Holder("h2", 0) for _ in range(cfg.holders)] + [Breaker("idle", cfg.breaks_each)
                                                                      for _ in range(cfg.breakers)])
    return State(frozenset(fs.items()), procs, frozenset(), (), 0)


def endings(cfg: Config, i: int, p: Any, fs: dict) -> list[tuple[str, Any, dict, set, Any]]:
    """When no one else can move: a waiting holder times out (drops its candidate), an idle breaker stops.

    Offered only then: ending earlier touches only the process's private paths, so
    it is the same run as waiting until the end and ending there.
    """
    if isinstance(p, Holder) and p.pc == "h2":
        return [("H2 lock busy: lock timeout, give up", p._replace(pc="done", aux="timeout"), fs, set(), None)]
    if isinstance(p, Breaker) and p.pc == "idle":
        return [("stop", p._replace(pc="done"), fs, set(), None)]
    return []


def successors(cfg: Config, s: State) -> list[tuple[str, State, tuple[str, str] | None]]:
    fs = dict(s.fs)
    out = _moves(cfg, s, fs, False)
    return out or _moves(cfg, s, fs, True)


def _moves(cfg: Config, s: State, fs: dict, ending: bool) -> list[tuple[str, State, tuple[str, str] | None]]:
    out = []
    for i, p in enumerate(s.procs):
        if p.pc in ("done", "crashed"):
            continue
        name = f"H{i}" if isinstance(p, Holder) else f"B{i - cfg.holders}"
        if ending:
            steps = endings(cfg, i, p, fs)
        elif isinstance(p, Holder):
            steps = holder_steps(cfg, i, p, fs)
        else:
            steps = breaker_steps(cfg, i - cfg.holders, p, fs)
        if isinstance(p, Holder) and p.pc != "h2" and s.crashes < cfg.crashes and not ending:
            steps.append(("CRASH", p._replace(pc="crashed"), fs, set(), ("crash", None)))
        for label, np, nfs, logs, event in steps:
            commits, crashes, bad = s.commits, s.crashes, None
            if event and event[0] == "commit":
                t, ra, rb = event[1]
                if ra != rb:
                    bad = ("torn read committed", f"{t} read a={ra} b={rb}")
                elif ra != len(commits):
                    bad = ("two holders: lost update", f"{t} committed what it read, a={ra}, "
                           f"after {len(commits)} earlier commits")
                commits = commits + (event[1],)
            elif event and event[0] == "crash":
                crashes += 1
            elif event:
                bad = event
            procs = s.procs[:i] + (np,) + s.procs[i + 1:]
            out.append((f"{name}: {label}", State(frozenset(nfs.items()), procs, s.log | logs, commits, crashes), bad))
    return out


def final_check(cfg: Config, s: State) -> list[tuple[str, str]]:
    """Recover as the next process would (break a dead lock, roll K forward), then check P1, P3, P4."""
    bad = []
    fs = dict(s.fs)
    log = set(s.log)
    if L in fs:
        names = remove_tree(fs, L)
        log |= {("rb", t) for t in tokens_in(cfg, names, L)}
    if K in fs and cfg.protocol == "v2" and cfg.roll_forward:
        mans = [q for q in _under(fs, K) if q.rpartition("/")[2].startswith("manifest")]
        for src, dst in (read(fs, mans[0]) or ()) if mans else ():
            replace(fs, f"{K}/{src}", dst)
    a, b, n = read(fs, "a"), read(fs, "b"), len(s.commits)
    if not a == b == n:
        bad.append(("final state disagrees with the commits", f"final a={a} b={b}, {n} commits"))
    done = {c[0] for c in s.commits}
    for kind, t in s.log:
        if kind == "rec" and (t in done) == (("rb", t) in log):
            bad.append(("log disagrees with state",
                        f"txn {t} {'committed' if t in done else 'not committed'}, rolled_back "
                        f"{'present' if ('rb', t) in log else 'absent'}"))
    if s.crashes == 0:
        left = sorted(set(dict(s.fs)) - set(FILES) - {"a.bak"})
        if left:
            bad.append(("leftovers without a crash", str(left)))
    stuck = [i for i, p in enumerate(s.procs) if isinstance(p, Holder) and p.aux == "stuck"]
    if stuck:
        bad.append(("holder stuck", str(stuck)))
    return bad


def check(cfg: Config, limit: int = 5_000_000) -> Result:
    """Breadth-first over every interleaving (so each violation's trace is a shortest one)."""
    started = time.perf_counter()
    res = Result()
    s0 = initial(cfg)
    parent: dict[State, tuple[State | None, str]] = {s0: (None, "")}
    queue = deque([s0])
    while queue:
        s = queue.popleft()
        succ = successors(cfg, s)
        if not succ:
            res.finals += 1
            res.retried += any(isinstance(p, Holder) and p.attempt > 0 for p in s.procs)
            for p in s.procs:
                if isinstance(p, Holder):
                    res.outcomes[str(p.aux if p.pc == "done" else p.pc)] = \
                        res.outcomes.get(str(p.aux if p.pc == "done" else p.pc), 0) + 1
            for kind, detail in final_check(cfg, s):
                res.add(kind, _trace(parent, s) + [f"END: {detail}"])
            continue
        for label, ns, bad in succ:
            res.transitions += 1
            if bad is not None:
                res.add(bad[0], _trace(parent, s) + [label, f"VIOLATION: {bad[1] or bad[0]}"])
                continue
            if ns not in parent:
                parent[ns] = (s, label)
                queue.append(ns)
                if len(parent) > limit:
                    raise RuntimeError(f"more than {limit} states: shrink the configuration")
    res.states = len(parent)
    res.seconds = time.perf_counter() - started
    return res


def _trace(parent: dict, s: State) -> list[str]:
    labels = []
    while True:
        prev, label = parent[s]
        if prev is None:
            return labels[::-1]
        labels.append(label)
        s = prev


def report(name: str, cfg: Config, res: Result) -> str:
    lines = [f"{name}: {res.states} states, {res.transitions} transitions, {res.finals} final states "
             f"({res.retried} with a retried commit), {res.seconds:.1f}s; violations: {res.counts or 'none'}"]
    for kind, trace in sorted(res.violations.items()):
        lines.append(f"  shortest '{kind}' ({len(trace) - 1} steps):")
        lines += [f"    {k + 1:2}. {step}" for k, step in enumerate(trace)]
    return "\n".join(lines)
