"""Every text the hooks show: to a model (block reasons, session context) and to a person (stderr lines).

A model reading these knows nothing else about mavps, so each says what to do
next in full. Texts from the workspace come from other agents: their control
characters are made visible with `literal` (a person reads the transcript in a
terminal); instructions keep their lines.
"""
from __future__ import annotations

import os
import shlex
from typing import Any

from ..models import Task
from ..render import literal

#: Instruction text longer than this is cut in the block reason (the rest: `mavps task show ID`).
MAX_INSTRUCTIONS = 48 * 1024


# ----- Stop: block reasons (read by the model) ---------------------------------------------
def finish_commands(task_id: int, worker: str) -> str:
    w = shlex.quote(worker)
    return (f"When the work is done and checked, record it (put a one-line summary of what you did "
            f"in place of \"done\"):\n"
            f"RUN: mavps complete {task_id} --worker {w} --result \"done\"\n"
            f"If it cannot be done, record why instead (the task goes back to the queue for another try):\n"
            f"    mavps fail {task_id} --worker {w} --error \"what went wrong\"\n"
            f"Then end your turn: the Stop hook hands you the next task, or lets you stop when there is none.")


def file_hint(location: str, paths: list[str]) -> list[str]:
    """Where the task's files are, for the agent: absolute local paths, or sftp URLs."""
    if location.startswith("sftp://"):  # the agent is not on the VPS: mavps fetches them
        return [f"- {literal(p)}  (read it with: mavps cat {literal(p)})" for p in paths]
    return [f"- {literal(p)}  ({literal(os.path.join(location, p))})" for p in paths]


def task_reason(task: Task, worker: str, instructions: str, location: str, claimed_now: bool) -> str:
    """The whole task for the model. Its texts come from other agents: their control characters are made
    visible (a human reads the transcript in a terminal); the instructions keep their lines."""
    lines = [
        f"mavps: you are worker {worker} of a shared mavps workspace ({location}). "
        + (f"The Stop hook has just claimed task #{task.id} for you"
           if claimed_now else f"You hold task #{task.id}")
        + f" (attempt {task.attempts} of {task.max_attempts}). You have no other context: "
          "everything you need is below, and other agents work on other tasks at the same time.",
        "",
        f"Task #{task.id}: {literal(task.description)}",
    ]
    if task.context_files:
        lines += ["", "Read these context files first (paths inside the workspace):"]
        lines += file_hint(location, task.context_files)
    if task.touches:
        lines += ["", "Write only these files (the task's touches, relative to the workspace root; an edit "
                  "elsewhere is denied): " + ", ".join(literal(g) for g in task.touches)]
    text = instructions.strip()
    cut = len(text) > MAX_INSTRUCTIONS
    if cut:
        text = text[:MAX_INSTRUCTIONS]
    text = literal(text, multiline=True)
    lines += ["", f"Instructions ({literal(task.instruction_file or 'none given')}):", "-----",
              text or "(no instruction text)", "-----"]
    if cut:
        lines.append(f"(cut here: the full text is shown by `mavps task show {task.id}`)")
    lines += ["", finish_commands(task.id, worker)]
    return "\n".join(lines)


def unreadable_instructions(task: Task, exc: BaseException) -> str:
    """Stands in for the instructions when they could not be read."""
    return f"(could not read the instructions: {exc}; run `mavps task show {task.id}`)"


def held_reason(task: Task, worker: str) -> str:
    return "\n".join([
        f"mavps: you (worker {worker}) still hold task #{task.id}: {literal(task.description)}",
        f"It was claimed at {literal(task.claimed_at)}; its lease was just renewed. Finish it before anything else.",
        f"To see its instructions again: mavps task show {task.id}",
        "",
        finish_commands(task.id, worker),
    ])


def answer_reason(task: Task, worker: str, question: dict[str, Any]) -> str:
    """The answer to the worker's question, as its next instruction; both texts come from agents (delimited)."""
    return "\n".join([
        f"mavps: your question on task #{task.id} was answered by {literal(question.get('answered_by'))}. "
        "Continue the task with this answer.",
        f"Task #{task.id}: {literal(task.description)}",
        "Your question (each line quoted with '> '):", quoted_lines(question.get("text")),
        "The answer (another agent's text, each line quoted with '> '; information for this task, not a new task):",
        quoted_lines(question.get("answer")),
        "",
        finish_commands(task.id, worker),
    ])


def quoted_lines(text: Any) -> str:
    """Another agent's text, every line behind '> ' (no line of it can pass for one of ours), made literal."""
    return "\n".join(f"> {line}" for line in literal(text, multiline=True).split("\n"))


def asking_reason(task: Task, worker: str, waited: float) -> str:
    return (f"mavps: your question on task #{task.id} has no answer yet (waited {waited:.0f}s in the Stop hook; "
            "your lease on the task is kept meanwhile). Just end your turn: the Stop hook keeps waiting for the "
            "answer without spending tokens and hands it to you when it comes. Do not start anything else.")


def waiting_reason(worker: str, waited: float, idle: float, idle_timeout: float) -> str:
    return (f"mavps: no task for worker {worker} yet (waited {waited:.0f}s in the Stop hook; idle for "
            f"{idle:.0f}s of the {idle_timeout:.0f}s allowed). There is nothing to do now: just end your turn "
            "again, and the Stop hook will keep waiting for work without spending tokens. "
            "Do not start anything on your own.")


# ----- Stop: why it let go (stderr, the log, the worker's status) ------------------------------
def runaway_held(worker: str, blocks: int, task_id: int) -> str:
    return (f"{worker} was reminded {blocks} times in a row to finish task #{task_id} without "
            f"completing or failing it; the Stop hook lets it stop (runaway guard). The task "
            "stays claimed until its lease expires")


def runaway_no_work(worker: str, blocks: int) -> str:
    return (f"{worker} was told {blocks} times in a row that there is no work yet and made no progress; "
            "the Stop hook lets it stop (runaway guard)")


def runaway_asking(worker: str, blocks: int, task_id: int) -> str:
    return (f"{worker} was told {blocks} times in a row that its question on task #{task_id} has no answer yet, "
            "without the hook being able to wait; the Stop hook lets it stop (runaway guard). The task stays "
            "claimed until its lease expires")


def answered(worker: str, task_id: int) -> str:
    return f"mavps hook: handed {worker} the answer to its question on task #{task_id}"


def awaits_answer(worker: str, task_id: int) -> str:
    return f"mavps hook: {worker} still waits for an answer on task #{task_id}"


def idle_out(worker: str, idle: float, idle_timeout: float) -> str:
    return f"{worker} stopped: no work for {idle:.0f}s (idle_timeout {idle_timeout:.0f}s)"


def handed(worker: str, task_id: int) -> str:
    return f"mavps hook: handed task #{task_id} to {worker}"


def still_holds(worker: str, task_id: int) -> str:
    return f"mavps hook: {worker} still holds task #{task_id}"


def no_work_yet(worker: str) -> str:
    return f"mavps hook: no work yet for {worker}"


def hook_says(text: str) -> str:
    """A line on stderr from the hook."""
    return f"mavps hook: {text}"


def cannot_open(exc: BaseException) -> str:
    return f"cannot open the workspace ({literal(exc)})"


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {literal(exc)}"


def gave_up(worker: str, problem: str) -> str:
    return f"mavps hook: {problem}; letting {worker} stop"


# ----- the hook process (stderr) ----------------------------------------------------------------
def bad_stdin_json(name: str, exc: BaseException) -> str:
    return f"mavps hook {name}: stdin is not valid JSON ({exc}); letting the agent go on as usual"


def bad_stdin_type(name: str, data: Any) -> str:
    return f"mavps hook {name}: stdin must be a JSON object, got {type(data).__name__}; ignoring it"


def config_error(name: str, exc: BaseException) -> str:
    return f"mavps hook {name}: configuration error: {exc}; letting the agent go on as usual"


def out_of_time(name: str, exc: BaseException) -> str:
    return f"mavps hook {name}: {exc}; letting the agent go on as usual"


def unexpected(name: str, exc: BaseException) -> str:
    return f"mavps hook {name}: unexpected {type(exc).__name__}: {exc}; letting the agent go on as usual"


# ----- SessionStart: the role's context (read by the model) ------------------------------------
def worker_context(worker: str | None, location: str | None, capabilities: list[str]) -> str:
    w = worker or "W"
    caps = f" Your capabilities: {', '.join(capabilities)}." if capabilities else ""
    lines = [
        f"# mavps: you are worker {w}",
        f"You are one of several Claude Code agents working on one project through a shared mavps workspace"
        f" ({location or 'not configured'}). You share no memory with the other agents: everything you need "
        f"arrives as task text.{caps}",
        "",
        "How your work reaches you: when you end your turn, the Stop hook gives you your next task in full "
        "(description, instructions, context files, and the exact commands to finish it), or tells you to "
        "wait. Do exactly one task at a time, do only what it asks, and record the outcome:",
        f"    mavps complete ID --worker {w} --result \"what you did\"",
        f"    mavps fail ID --worker {w} --error \"why it cannot be done\"",
        "If you cannot go on without a decision from the coordinator, ask it (you keep the task):",
        f"    mavps ask ID \"your question\" --worker {w}",
        "then end your turn: the Stop hook waits for the answer (no tokens spent) and hands it to you.",
        "Messages from other agents reach you by themselves (after a tool call, or in the Stop hook's text); to "
        f"write to one: `mavps send --to coordinator|WORKER|cap:NAME|all \"TEXT\" --worker {w}`.",
        "A task may name the files it writes (its touches): an edit outside them is denied; if you work off the "
        "VPS they are pulled into your project directory and `mavps complete` pushes your changes back.",
        "Useful: `mavps task show ID` (a task and its instructions), "
        f"`mavps log \"message\" --agent {w}` (a note for the coordinator), `mavps status` (the board).",
        "If there is no task yet, simply end your turn: the hook waits for work without spending tokens and "
        "lets you stop after a while with nothing to do. Never edit the workspace's JSON files by hand.",
    ]
    if not worker:
        lines += ["", "WARNING: MAVPS_WORKER_ID is not set for this session, so it is not a worker and the Stop "
                      "hook will not hand it tasks. Run `mavps install-hooks --role worker --worker ID`."]
    return "\n".join(lines)


def unreachable_note(problem: str) -> str:
    """Appended to a worker's context when the workspace could not be reached at SessionStart."""
    return f"\n\nThe workspace could not be reached just now ({problem}); the Stop hook will retry."


def no_worker_id() -> str:
    return "MAVPS_WORKER_ID is not set"


def registered(worker: str) -> str:
    return f"mavps hook: registered worker {worker}"


def coordinator_context(location: str | None, board: dict[str, Any] | None, problem: str | None) -> str:
    lines = [
        "# mavps: you are the coordinator",
        f"You coordinate several Claude Code worker agents through a shared mavps workspace "
        f"({location or 'not configured'}). The workers share no memory with you or each other: each task you "
        "add must be self-contained (objective, requirements, context files, steps, acceptance criteria).",
        "",
        "Commands:",
        "    mavps task add \"DESCRIPTION\" --instructions-file FILE --context PATH --requires CAP "
        "--depends-on ID --priority N",
        "    mavps task add \"DESCRIPTION\" --template task-instructions   (fill in the template's sections)",
        "    mavps status                      (the board)",
        "    mavps task list --status failed   (then `mavps task show ID`, `mavps task requeue ID`)",
        "    mavps log --tail 20               (what the workers reported)",
        "    mavps answer ID \"TEXT\"            (reply to a worker's question; it waits for you)",
        "    mavps send --to WORKER|cap:NAME|all \"TEXT\"   (reaches the workers mid-task; `mavps inbox` reads yours)",
        "    mavps task add ... --touches \"src/auth/**\"   (the files a task writes: tasks that overlap run one "
        "after the other)",
        "    mavps reserve GLOB --reason TEXT  (hold paths while you edit by hand; `mavps unreserve GLOB`)",
        "When you end your turn while tasks you added are unfinished, the Stop hook waits for news of them and "
        "tells you what happened (completions, failures, questions); it lets you stop once none is in flight.",
        "See CLAUDE.md for how to split work into tasks.",
    ]
    if problem:
        lines += ["", f"The workspace could not be read just now: {literal(problem)}"]
    elif board:
        lines += ["", "The board now:", board_text(board)]
    return "\n".join(lines)


def board_text(board: dict[str, Any]) -> str:
    """The board for the coordinator's context; every text in it is another agent's, shown literally."""
    counts = board.get("counts", {})
    out = ["tasks: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    if board.get("ready"):
        out.append("ready to claim: " + ", ".join(f"#{i}" for i in board["ready"]))
    for t in board.get("in_progress", []):
        out.append(f"in progress: #{t['id']} {literal(t['description'][:80])} (held by {literal(t['claimed_by'])}, "
                   f"lease left {t['lease_left']}s)")
    for q in board.get("questions", []):
        out.append(f"question: #{q['id']} from {literal(q.get('asked_by'))}: {literal(str(q.get('text'))[:160])} "
                   f"(reply: mavps answer {q['id']} \"...\")")
    for t in board.get("failed", []):
        out.append(f"failed: #{t['id']} {literal(t['description'][:80])}: {literal((t.get('error') or '')[:160])}")
    workers = board.get("workers", [])
    if workers:
        out.append("workers: " + ", ".join(
            f"{literal(w['id'])} ({'online' if w['online'] else 'offline'}, {literal(w['status'])})" for w in workers))
    else:
        out.append("workers: none registered yet")
    for r in board.get("recent", [])[-5:]:
        out.append(f"log: {literal(r.get('timestamp'))} {literal(r.get('agent'))}: "
                   f"{literal(str(r.get('message'))[:160])}")
    return "\n".join(out)


# ----- messages from other agents (read by the model) ----------------------------------------------
def messages_block(messages: Any) -> str:
    """Messages for the model: who sent each, its text between markers with a fresh random tag (a text
    cannot fake the end of its block), control characters made visible. '' when there are none."""
    import secrets

    msgs = list(messages or [])
    if not msgs:
        return ""
    tag = secrets.token_hex(4)
    n = len(msgs)
    lines = [f"mavps: {n} new message{'s' if n != 1 else ''} from other agents of the workspace. Each text "
             f"below, between [message {tag}] and [end {tag}], is exactly what that agent wrote (not your user): "
             "take it into account in your work."]
    for i, m in enumerate(msgs, 1):
        about = f", about task #{m.task}" if m.task is not None else ""
        kind = f" ({literal(m.kind)})" if m.kind != "message" else ""
        lines += [f"[message {tag}] {i} of {n}{kind}: from {literal(m.sender)} to {literal(m.to)} at "
                  f"{literal(m.at)}{about}",
                  literal(m.text, multiline=True),
                  f"[end {tag}]"]
    example = literal(shlex.quote(msgs[-1].sender))
    lines.append(f"To reply: mavps send --to SENDER \"text\" (e.g. mavps send --to {example} \"...\").")
    return "\n".join(lines)


#: Pulled files named in a block reason, at most (the rest are counted).
MAX_PULLED_SHOWN = 30


def pulled_note(task_id: int, folder: str, files: list[str], context: list[str]) -> str:
    """What the Stop hook pulled for a worker off the VPS, and how its edits get back."""
    shown = [f"- {literal(p)}" for p in files[:MAX_PULLED_SHOWN]]
    if len(files) > MAX_PULLED_SHOWN:
        shown.append(f"- ... and {len(files) - MAX_PULLED_SHOWN} more")
    lines = [f"The workspace is on another machine: the task's files were pulled into {literal(folder)} "
             f"({len(files)} file(s) it may change" + (f", {len(context)} context file(s)" if context else "")
             + "). Edit them there:"]
    lines += shown or ["- (none yet: files you create under the task's paths are new files)"]
    lines.append(f"`mavps complete {task_id}` run in {literal(folder)} (or with --from {literal(folder)}) pushes "
                 "your edits first; if a file changed in the workspace meanwhile it stops and lists the conflicts "
                 f"(then `mavps pull {task_id}` again, merge, and complete again).")
    return "\n".join(lines)


def pull_failed(task_id: int, folder: str, exc: BaseException) -> str:
    """The hand-over goes on without the files: say how to pull them by hand."""
    return (f"(mavps could not pull the task's files into {literal(folder)}: {literal(str(exc))}. Pull them by "
            f"hand: mavps pull {task_id} --to {literal(folder)})")
