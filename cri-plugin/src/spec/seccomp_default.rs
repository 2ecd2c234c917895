//! berth's RuntimeDefault seccomp profile, as data.
//!
//! Every system call is refused with EPERM except an allowlist that matches the well-known
//! container default in effect: ordinary process, file, memory, time, signal, IPC and socket
//! calls are allowed; calls that reach past the container (mount, namespaces, modules,
//! clocks, reboot, kernel keyrings, BPF, …) are allowed only when the capability that guards
//! them is granted. Names the kernel or libseccomp do not know are skipped by runc.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Files, directories, links, attributes, descriptors and their I/O.
#[rustfmt::skip]
const FILE_CALLS: &[&str] = &[
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock",
    "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat",
    "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link", "linkat", "_llseek", "lseek", "lstat",
    "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat",
    "openat2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64",
    "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes", "vmsplice", "write", "writev", "cachestat", "statmount",
    "listmount",
];

/// Extended attributes.
#[rustfmt::skip]
const XATTR_CALLS: &[&str] = &[
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat", "lgetxattr",
    "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "removexattrat",
    "setxattr", "setxattrat",
];

/// Waiting on many descriptors, and descriptors that deliver events.
#[rustfmt::skip]
const EVENT_CALLS: &[&str] = &[
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "_newselect", "pipe", "pipe2",
    "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
];

/// Processes, threads, credentials inside the container's own namespaces, scheduling.
#[rustfmt::skip]
const PROCESS_CALLS: &[&str] = &[
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "get_thread_area", "gettid", "getuid", "getuid32", "ioprio_get",
    "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "pidfd_open", "pidfd_send_signal", "prctl",
    "prlimit64", "process_mrelease", "restart_syscall", "rseq", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsgid32", "setfsuid",
    "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "set_thread_area", "set_tid_address", "setuid", "setuid32",
    "sysinfo", "tgkill", "tkill", "ugetrlimit", "uname", "uretprobe", "vfork", "wait4", "waitid", "waitpid",
];

/// Signals.
#[rustfmt::skip]
const SIGNAL_CALLS: &[&str] = &[
    "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaltstack",
    "sigprocmask", "sigreturn",
];

/// Memory and futexes.
#[rustfmt::skip]
const MEMORY_CALLS: &[&str] = &[
    "brk", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "madvise",
    "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal", "msync", "munlock", "munlockall", "munmap",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
];

/// Reading clocks, timers, sleeping. (Setting the clock needs CAP_SYS_TIME.)
#[rustfmt::skip]
const TIME_CALLS: &[&str] = &[
    "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
    "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "times",
];

/// System V and POSIX IPC (in the pod's IPC namespace).
#[rustfmt::skip]
const IPC_CALLS: &[&str] = &[
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
];

/// Sockets, except creating them, which is filtered by address family below.
#[rustfmt::skip]
const SOCKET_CALLS: &[&str] = &[
    "accept", "accept4", "bind", "connect", "getpeername", "getrandom", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
    "setsockopt", "shutdown", "socketcall", "socketpair",
];

/// Calls only one architecture has.
#[cfg(target_arch = "x86_64")]
const ARCH_CALLS: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_CALLS: &[&str] =
    &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_CALLS: &[&str] = &[];

/// The native ABI and the compatibility ABIs the kernel also accepts on it.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else {
        Vec::new()
    }
}

/// System calls a capability makes safe to allow.
fn calls_for(cap: Capability) -> &'static [&'static str] {
    match cap {
        Capability::DacReadSearch => &["open_by_handle_at"],
        Capability::SysAdmin => &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        Capability::SysBoot => &["reboot"],
        Capability::SysChroot => &["chroot"],
        Capability::SysModule => &["delete_module", "init_module", "finit_module"],
        Capability::SysPacct => &["acct"],
        Capability::SysPtrace => {
            &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]
        }
        Capability::SysRawio => &["iopl", "ioperm"],
        Capability::SysTime => &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        Capability::SysTtyConfig => &["vhangup"],
        Capability::SysNice => &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
        Capability::Syslog => &["syslog"],
        Capability::Bpf => &["bpf"],
        Capability::Perfmon => &["perf_event_open"],
        _ => &[],
    }
}

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    s
}

/// A condition on argument `index`. oci-spec gives this type no setters, only a builder; the
/// builder cannot fail (every field has a default), and tests check the conditions built.
fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).op(op).value(value);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    b.build().unwrap_or_default()
}

fn allow_if(name: &str, index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSyscall {
    let mut s = allow(&[name]);
    s.set_args(Some(vec![arg(index, op, value, None)]));
    s
}

/// berth's RuntimeDefault profile for a process whose bounding set is `caps`.
pub fn default_profile<'a>(caps: impl IntoIterator<Item = &'a Capability>) -> LinuxSeccomp {
    let caps: Vec<Capability> = caps.into_iter().copied().collect();
    let mut rules = Vec::new();
    for group in [
        FILE_CALLS,
        XATTR_CALLS,
        EVENT_CALLS,
        PROCESS_CALLS,
        SIGNAL_CALLS,
        MEMORY_CALLS,
        TIME_CALLS,
        IPC_CALLS,
        SOCKET_CALLS,
        ARCH_CALLS,
    ] {
        rules.push(allow(group));
    }
    // Reading another process's memory was unsafe before 4.8; every supported kernel is newer.
    rules.push(allow(&["process_vm_readv", "process_vm_writev", "ptrace"]));

    // socket(2) for every address family but AF_ALG (38, kernel crypto) and AF_VSOCK (40, the
    // hypervisor). One condition per rule: runc ORs repeated conditions on one argument.
    const AF_ALG: u64 = 38;
    const AF_VSOCK: u64 = 40;
    rules.push(allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpLt, AF_ALG));
    rules.push(allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpEq, AF_ALG + 1));
    rules.push(allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpGt, AF_VSOCK));

    // personality(2) only to the harmless domains: Linux, its 32-bit variant, with or without
    // UNAME26, and the query value.
    for persona in [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(allow_if("personality", 0, LinuxSeccompOperator::ScmpCmpEq, persona));
    }

    for cap in &caps {
        let calls = calls_for(*cap);
        if !calls.is_empty() {
            rules.push(allow(calls));
        }
    }

    if !caps.contains(&Capability::SysAdmin) {
        // clone(2) without any namespace flag: threads and forks, never new namespaces.
        const NEW_NAMESPACE_FLAGS: u64 =
            0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;
        let mut clone = allow(&["clone"]);
        clone.set_args(Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            NEW_NAMESPACE_FLAGS,
            Some(0),
        )]));
        rules.push(clone);
        // clone3's flags are behind a pointer seccomp cannot read; ENOSYS makes libc fall back
        // to clone, which is filtered above. EPERM would be taken as a real refusal.
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".to_string()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        rules.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(rules));
    profile
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn allowed_unconditionally(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_refuses_with_eperm_and_allows_the_basics() {
        let p = default_profile(&[]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        let allowed = allowed_unconditionally(&p);
        for call in
            ["read", "write", "openat", "execve", "exit_group", "mmap", "futex", "clock_gettime", "wait4"]
        {
            assert!(allowed.iter().any(|a| a == call), "{call} should be allowed");
        }
        for call in
            ["mount", "umount2", "unshare", "setns", "reboot", "init_module", "kexec_load", "bpf", "chroot"]
        {
            assert!(!allowed.iter().any(|a| a == call), "{call} should not be allowed without capabilities");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
    }

    #[test]
    fn no_name_is_listed_twice_in_the_base_allowlist() {
        let mut all: Vec<&str> = [
            FILE_CALLS,
            XATTR_CALLS,
            EVENT_CALLS,
            PROCESS_CALLS,
            SIGNAL_CALLS,
            MEMORY_CALLS,
            TIME_CALLS,
            IPC_CALLS,
            SOCKET_CALLS,
        ]
        .concat();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn capabilities_unlock_their_calls() {
        let p = default_profile(&[Capability::SysAdmin, Capability::SysChroot]);
        let allowed = allowed_unconditionally(&p);
        for call in ["mount", "unshare", "setns", "sethostname", "clone", "clone3", "chroot"] {
            assert!(allowed.iter().any(|a| a == call), "{call} should be allowed with CAP_SYS_ADMIN");
        }
        // With CAP_SYS_ADMIN there is no filtered clone and no ENOSYS clone3.
        assert!(
            !p.syscalls().as_ref().unwrap().iter().any(|s| s.action() == LinuxSeccompAction::ScmpActErrno)
        );
    }

    #[test]
    fn without_sys_admin_clone_is_filtered_and_clone3_is_enosys() {
        let p = default_profile(&[]);
        let rules = p.syscalls().clone().unwrap();
        let clone = rules.iter().find(|s| s.names() == &["clone"]).unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value() & 0x0002_0000, 0x0002_0000, "CLONE_NEWNS is in the mask");
        assert_eq!((arg.index(), arg.value_two()), (0, Some(0)));
        let clone3 = rules.iter().find(|s| s.names() == &["clone3"]).unwrap();
        assert_eq!((clone3.action(), clone3.errno_ret()), (LinuxSeccompAction::ScmpActErrno, Some(38)));
    }

    #[test]
    fn socket_is_allowed_for_every_family_but_alg_and_vsock() {
        let p = default_profile(&[]);
        let conds: Vec<(LinuxSeccompOperator, u64)> = p
            .syscalls()
            .clone()
            .unwrap()
            .iter()
            .filter(|s| s.names() == &["socket"])
            .map(|s| {
                let a = s.args().as_ref().unwrap()[0];
                assert_eq!(a.index(), 0);
                (a.op(), a.value())
            })
            .collect();
        assert_eq!(
            conds,
            [
                (LinuxSeccompOperator::ScmpCmpLt, 38),
                (LinuxSeccompOperator::ScmpCmpEq, 39),
                (LinuxSeccompOperator::ScmpCmpGt, 40)
            ]
        );
    }

    #[test]
    fn default_profile_round_trips_through_json() {
        let p = default_profile(&[Capability::SysPtrace]);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        let back: LinuxSeccomp = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
