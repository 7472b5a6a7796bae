// Package simhv is a simulated hypervisor: an in-memory "fake libvirt" that
// implements hypervisor.Hypervisor. It is real software, not a mock: the unit
// tier, the daemon's --hypervisor=sim mode and scale and fault tests all run
// on it. Everything that takes time runs on a Clock (Options.Clock), so tests
// drive it with a *clock.Fake from fakes/clock and never sleep.
//
// # Define
//
// The XML is parsed with libvirtxml and refused as libvirt would, with
// libvirt-like messages: unparsable XML; no name; a name containing '/'; a
// domain type other than kvm or qemu (or none); no or zero <memory>, or an
// unknown unit; a malformed UUID; a name already defined with another UUID; a
// UUID already defined under another name; a disk without a target dev; a
// disk bus other than ide, fdc, scsi, virtio, xen, usb, uml, sata, sd; two
// disks with the same target dev. Refusals of the definition itself are of
// kind errdefs.ErrInvalidArgument, clashes with other domains of kind
// errdefs.ErrAlreadyExists. A definition without a UUID gets a random one; as
// in libvirt, that makes redefining an existing name without its UUID fail.
// Redefining a name with its UUID replaces the definition; a running domain
// keeps the configuration it was started with until its next Start. XML
// returns the newest definition, normalised by libvirtxml and with its UUID.
// DefinedXML returns every document successfully defined under a name.
//
// # States
//
//	Define            -> shutoff/defined
//	Start             -> running/booted, new PID (a counter from FirstPID), StartedAt
//	Start, FailStart  -> shutoff/failed and the error
//	Shutdown          -> shutdown/user, then after ShutdownDelay of guest time
//	                     shutoff/shutdown, exit 0 (ExitCodeShutdown)
//	Shutdown, hung    -> nothing: a guest with IgnoreACPI ignores every request
//	Destroy           -> shutoff/destroyed, exit 137 (ExitCodeDestroyed)
//	crash             -> crashed/crashed, exit 139 (ExitCodeCrashed)
//	Pause / Resume    -> paused/user / running/unpaused (or shutdown/user
//	                     when an ACPI shutdown is pending)
//
// A stop sets FinishedAt to the exact time it happened, clears the PID and
// keeps StartedAt; the next Start clears FinishedAt and ExitCode. Crashed is a
// stopped state like shut off: Start boots it again, Destroy does nothing,
// Undefine removes it. Start of an active domain (running, paused, shutting
// down), Undefine of one, Shutdown of a stopped one, Stats, Console and
// AgentCommand of a stopped one fail with hypervisor.ErrInvalidState;
// Destroy of a stopped domain succeeds. Every call on a missing name fails
// with hypervisor.ErrNotFound.
//
// Guests have their own clock: guest time stops while paused, so boot
// output, a pending ACPI shutdown, CrashAfter and guest-exec sleeps wait. A
// booted, idle guest costs no timer and no goroutine; a guest with something
// pending has one timer.
//
// # Watching states
//
// Hypervisor implements hypervisor.StateWatcher: WatchStates reports every
// change of a domain's state or reason, whatever made it (Start, a failed
// Start, an ACPI shutdown beginning and completing, Destroy, Crash,
// CrashAfter, the console's "poweroff" and "crash", Pause, Resume), and
// every Undefine, by the domain's name, once Status shows the change.
// Define and SetBehavior change no state and are not reported. Notices are
// coalesced per domain while the reader is busy; a reader that falls behind
// by more than Options.WatchBuffer domains gets one Resync notice instead.
// Close closes every watch; Watches counts the open ones.
//
// # Guest behaviour
//
// GuestBehavior (Options.DefaultBehavior, or per domain with SetBehavior,
// before or after Define) sets IgnoreACPI (a hung guest), ShutdownDelay,
// CrashAfter (guest time after start), FailStart and BootTime. Crash crashes a
// running guest now.
//
// # Console
//
// Console needs an active domain with a <serial> or <console> device (else
// hypervisor.ErrUnimplemented, as libvirt finds no character device). One
// session at a time per domain: a second Console fails with ErrInvalidState
// until the first is closed or the run ends. Closing it never affects the
// domain. Output is the guest's serial port, with "\r\n" line ends as a real
// tty: at Start a kernel-like boot log begins, spread over the boot time,
// ending with the line ReadyMarker(name) ("podvisor-sim: <name> ready") and
// the Prompt "# ". Output nobody reads is kept in a buffer of
// ConsoleBufferSize bytes (64 KiB), oldest bytes dropped first, and read by
// the next session: reading consumes it. Input is echoed; a line ends with
// "\r" or "\n" ("\r\n" counts once); backspace and ^C work. Commands:
// "hostname" prints the name, "poweroff" shuts the guest off (reason
// shutdown, exit 0), "crash" crashes it; anything else prints
// "sh: <cmd>: not found". Input to a paused guest is queued until Resume.
// When the run ends, Read returns what was left, then io.EOF; Write fails
// with ErrInvalidState. A new run starts with an empty buffer.
//
// # Guest agent
//
// AgentCommand works when the XML has a virtio <channel> with target name
// org.qemu.guest_agent.0 (else hypervisor.ErrUnimplemented) and the guest has
// booted (else ErrAgentUnresponsive; a paused guest makes the caller wait its
// timeout first). It answers guest-ping ({"return":{}}), guest-info,
// guest-sync, and guest-exec / guest-exec-status running the guest's
// programs: hostname, echo, true, false, cat (copies input-data), sleep
// (guest time), and sh/bash -c with one of those or "exit N"; an unknown
// program under sh exits 127. Errors come back as the agent's error JSON
// ({"error":{"class":...,"desc":...}}) together with an *AgentError.
//
// # Stats
//
// Stats of an active domain are functions of guest time, so they grow
// while the guest runs and stand still while it is paused: CPUTime is 10%
// of each vCPU; the working set (MemoryBytes) is a quarter of the
// configured memory (MemoryLimitBytes), usage half of it, as if the guest's
// balloon reported them; each disk of the definition reads 4 KiB and
// writes 1 KiB per millisecond of CPU time, and reports what its file
// holds on the host (st_blocks * 512) as its allocation; one NIC, eth0,
// receives 1500 and sends 1000 bytes per guest second.
//
// # Resize
//
// Sizing, SetVCPUs and SetMemory (hypervisor.Resizer) change an active
// domain's vCPUs and memory within the <vcpu> and <memory> it was defined
// with (the guest starts with <vcpu current> and <currentMemory>); more is
// refused as libvirt refuses it. They share the fault op OpResize.
//
// # Faults
//
// InjectFault(op, name, err, times) makes calls of op fail before they have
// any effect; InjectFaultAfterEffect makes them fail after it (a lost reply).
// name "" matches every domain; times Forever (-1) lasts until ClearFaults.
// SetLatency delays calls before their effect, SetLatencyAfterEffect after
// it, both on the Clock and both cut short by the caller's context (a kubelet
// timeout). CallCount counts calls.
//
// # Persistence
//
// With Options.StateDir every transition is written (temporary file and
// rename) to <StateDir>/domains/<uuid>.json, and the PID counter to
// <StateDir>/sim.json. New reloads them: running domains stay running with
// their PID and StartedAt and print no new boot log (output of the lost
// process is not kept; a domain still booting goes on where it was); events
// that fell due while no simulator ran (an ACPI shutdown completing, a
// CrashAfter) are applied at the time they were due; behaviours set with
// SetBehavior are kept (FailStart as its message). Only one Hypervisor may
// use a StateDir at a time. Close stops timers and writes; a test models
// "kill -9" either by Close or by abandoning the instance with a fake clock
// that is never advanced again. DefinedXML history, console buffers and
// guest-exec processes are in memory only.
package simhv
