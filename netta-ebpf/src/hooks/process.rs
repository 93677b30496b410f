//! Process identity, one record per event in a process's life, so the agent can
//! name the program of a process that exits a millisecond after its connection:
//! `sched:sched_process_exec` (the program and, with `--process-args`, its
//! arguments), `task:task_newtask` (a new process, not a thread: it runs its
//! parent's program until it execs; the clone flags, which only this tracepoint
//! carries, tell the two apart) and `sched:sched_process_exit` (the main thread
//! ended). Each runs once per event, never per packet.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_task, bpf_get_current_uid_gid,
            bpf_probe_read_kernel_str, bpf_probe_read_user,
        },
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use netta_ebpf::{
    exec_flags, tp, Config, ExecEvent, Kind, TaskEvent, EXEC_ARGS_LEN, EXEC_PATH_LEN,
    EXEC_SIZE_NO_ARGS,
};

use crate::maps::{CONFIG, EXEC_SCRATCH};
use crate::record::{emit_bytes, read_at, status, tp_field};

/// `CLONE_THREAD` and `CLONE_PARENT` (uapi, fixed).
const CLONE_PARENT: u64 = 0x0000_8000;
const CLONE_THREAD: u64 = 0x0001_0000;
/// kthreadd: the parent of every kernel thread, whose births are not processes.
const KTHREADD: u32 = 2;

/// The fields every process record has, for the running task (`task`).
#[inline(always)]
fn task_record(kind: Kind, task: u64, cfg: &Config) -> Result<TaskEvent, i64> {
    let mut ev = TaskEvent::zeroed();
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.kind = kind as u8;
    ev.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: helpers without arguments.
    let (uid_gid, cgroup) = unsafe { (bpf_get_current_uid_gid(), bpf_get_current_cgroup_id()) };
    ev.uid = uid_gid as u32;
    ev.cgroup = cgroup;
    ev.start_ns = read_at(task, cfg.off_task_start)?;
    let parent: u64 = read_at(task, cfg.off_task_real_parent)?;
    ev.ppid = read_at(parent, cfg.off_task_tgid)?;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    Ok(ev)
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    status(try_exec(&ctx))
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = CONFIG.load();
    // Built in a per-CPU slot: the record is larger than the BPF stack.
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's slot; nothing else runs on it while this program does.
    let ev = unsafe { &mut *ev };
    // After the exec the running task is the process's leader.
    let task = unsafe { bpf_get_current_task() };
    ev.task = task_record(Kind::Exec, task, &cfg)?;
    // `filename` is a __data_loc: offset in the low half, length in the high half.
    let loc: u32 = tp_field(ctx, tp::exec::filename)?;
    let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
    // SAFETY: reads the tracepoint's own record; the helper bounds the copy.
    let n = unsafe {
        bpf_probe_read_kernel_str(
            ev.path.as_mut_ptr().cast(),
            EXEC_PATH_LEN as u32,
            (ctx.as_ptr() as *const u8).add(off).cast(),
        )
    };
    // The count includes the NUL; a path that filled the buffer was cut.
    let n = if n > 0 { n as usize - 1 } else { 0 };
    ev.task.path_len = n.min(EXEC_PATH_LEN) as u16;
    if len > EXEC_PATH_LEN {
        ev.task.flags |= exec_flags::PATH_TRUNCATED;
    }
    let mut size = EXEC_SIZE_NO_ARGS;
    if cfg.capture_args != 0 {
        read_args(ev, task, &cfg);
        size = core::mem::size_of::<ExecEvent>();
    }
    // SAFETY: the slot is `size_of::<ExecEvent>()` bytes; `size` is at most that.
    let bytes = unsafe { core::slice::from_raw_parts(ev as *const ExecEvent as *const u8, size) };
    emit_bytes(ctx, bytes);
    Ok(())
}

/// The argument list (`mm->arg_start..arg_end`, NUL-separated), its first
/// [`EXEC_ARGS_LEN`] bytes: in the new program's memory, written by this exec.
#[inline(always)]
fn read_args(ev: &mut ExecEvent, task: u64, cfg: &Config) {
    ev.task.args_len = 0;
    ev.task.flags |= exec_flags::HAS_ARGS;
    let Ok(mm) = read_at::<u64>(task, cfg.off_task_mm) else {
        return;
    };
    let (Ok(start), Ok(end)) = (
        read_at::<u64>(mm, cfg.off_mm_arg_start),
        read_at::<u64>(mm, cfg.off_mm_arg_end),
    ) else {
        return;
    };
    if mm == 0 || end <= start {
        return;
    }
    let mut len = end - start;
    if len > EXEC_ARGS_LEN as u64 {
        len = EXEC_ARGS_LEN as u64;
        ev.task.flags |= exec_flags::ARGS_TRUNCATED;
    }
    // SAFETY: `len` is at most the buffer's size; a fault is an error, not a crash.
    let rc = unsafe { bpf_probe_read_user(ev.args.as_mut_ptr().cast(), len as u32, start as _) };
    if rc == 0 {
        ev.task.args_len = len as u16;
    }
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    status(try_newtask(&ctx))
}

fn try_newtask(ctx: &TracePointContext) -> Result<(), i64> {
    let flags: u64 = tp_field(ctx, tp::newtask::clone_flags)?;
    if flags & CLONE_THREAD != 0 {
        return Ok(());
    }
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if parent_tgid == KTHREADD {
        return Ok(());
    }
    let child: i32 = tp_field(ctx, tp::newtask::pid)?;
    let cfg = CONFIG.load();
    // Runs in the parent, as the new process's last step of creation.
    let current = unsafe { bpf_get_current_task() };
    let mut ev = TaskEvent::zeroed();
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.kind = Kind::Fork as u8;
    ev.pid = child as u32;
    // SAFETY: helpers without arguments.
    let (uid_gid, cgroup) = unsafe { (bpf_get_current_uid_gid(), bpf_get_current_cgroup_id()) };
    ev.uid = uid_gid as u32;
    ev.cgroup = cgroup;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // CLONE_PARENT makes the child a sibling of the caller.
    let parent = if flags & CLONE_PARENT != 0 {
        read_at::<u64>(current, cfg.off_task_real_parent)?
    } else {
        current
    };
    ev.ppid = if parent == current {
        parent_tgid
    } else {
        read_at(parent, cfg.off_task_tgid)?
    };
    ev.start_ns = child_start(parent, child, &cfg).unwrap_or(ev.ts_ns);
    emit_bytes(ctx, ev.as_bytes());
    Ok(())
}

/// The new process's exact start (`start_boottime`, what /proc shows too): it
/// was just added last to its parent's `children` list. Another fork racing on
/// the same parent may have come after it: then its pid differs, and the caller
/// takes now instead.
#[inline(always)]
fn child_start(parent: u64, child: i32, cfg: &Config) -> Result<u64, i64> {
    // children.prev: the `sibling` list node of the last child.
    let last: u64 = read_at(parent, cfg.off_task_children + 8)?;
    let task = last.wrapping_sub(cfg.off_task_sibling as u64);
    let pid: i32 = read_at(task, cfg.off_task_pid)?;
    if pid != child {
        return Err(-1);
    }
    read_at(task, cfg.off_task_start)
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // Only the main thread: other threads' ends are not the process's.
    if id >> 32 != id & 0xffff_ffff {
        return 0;
    }
    let cfg = CONFIG.load();
    let task = unsafe { bpf_get_current_task() };
    match task_record(Kind::Exit, task, &cfg) {
        Ok(ev) => {
            emit_bytes(&ctx, ev.as_bytes());
            0
        }
        Err(_) => 1,
    }
}
