"""Boot a disk image in qemu-system-x86_64 the way Nova would.

Nova (libvirt driver) reads a few image properties to build the virtual
machine; everything else is its default:

* ``hw_firmware_type``: ``uefi`` boots OVMF, ``bios`` or no value SeaBIOS;
* ``hw_machine_type``: the QEMU machine; without it, the compute host's
  ``[libvirt] hw_machine_type`` or, unset, libvirt's default on x86,
  ``pc`` (i440fx), whatever the firmware (:data:`DEFAULT_MACHINE`);
* ``hw_disk_bus``: ``virtio`` unless set (``ide``, ``sata``, ``scsi``);
  ``hw_scsi_model=virtio-scsi`` picks the SCSI controller, libvirt's
  default being the LSI one.

The machine runs under TCG (no KVM needed), with no display and the
first serial port written to a file; the firmware's debug port (0x402)
goes to another.  The guest's own line on the serial port proves that
the firmware started the guest's boot loader.  A machine that does not
boot is recognised by what its firmware says: SeaBIOS's "No bootable
device", OVMF falling back to its shell, or a hand-over to the disk's
boot code after which nothing is printed.
"""

import atexit
import dataclasses
import os
import re
import shutil
import subprocess
import time

from glance_convert import formats
from glance_convert.testing import localglance

QEMU = 'qemu-system-x86_64'
SEABIOS = '/usr/share/seabios/bios-256k.bin'
OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'

#: The machine when the image names none: a compute host that leaves
#: [libvirt] hw_machine_type unset (kolla-ansible sets q35 since 2023).
DEFAULT_MACHINE = 'pc'

#: The files the harness needs, and the Debian package of each.
NEEDS = {QEMU: 'qemu-system-x86', SEABIOS: 'seabios',
         OVMF_CODE: 'ovmf', OVMF_VARS: 'ovmf'}

#: Seconds until the firmware hands over (or gives up): a generous
#: time-out for TCG on a loaded 2-core machine, where it takes ~5 s.
BOOT_TIMEOUT = 300
#: Seconds the guest's boot loader gets, once the firmware has handed
#: over, to print its line: it needs about 2 s under TCG.
HANDOVER_TIMEOUT = 60
#: Seconds to watch a guest that should hang after the hand-over (a UEFI
#: guest under SeaBIOS).  Not a measure of speed: SeaBIOS runs the
#: protective MBR's boot code, which is all zeros, so no longer wait
#: could show the guest's line.
WATCH_A_HANG = 15

BOOTED = 'booted'
NO_BOOT_DEVICE = 'firmware found nothing to boot'
SILENT = 'firmware handed over, nothing printed'
EXITED = 'machine exited'
TIMED_OUT = 'timed out'

#: Text each firmware prints when it has run out of things to boot.
FAILURE_TEXT = {
    'seabios': ('No bootable device',),
    'ovmf': ('No bootable option or device was found',
             'UEFI Interactive Shell'),
}
#: Text each firmware prints as it starts a boot loader from the disk.
HANDOVER_TEXT = {
    'seabios': ('Booting from Hard Disk',),
    'ovmf': ('BdsDxe: starting Boot',),
}

_ESCAPES = re.compile(r'\x1b(\[[0-9;?=]*[A-Za-z]|c)')


#: Machines started and not stopped yet: killed if the interpreter exits
#: first (they run in sessions of their own, so nothing else would).
_RUNNING = set()


@atexit.register
def _kill_leftover_machines():
    for running in list(_RUNNING):
        running.stop()


class MachineError(Exception):
    """The machine could not be described or started."""


def missing():
    """What is not installed, as "path (package)" strings."""
    return ['%s (%s)' % (path, package) for path, package in NEEDS.items()
            if not (shutil.which(path) if path == QEMU
                    else os.path.exists(path))]


def _quoted(path):
    """A path inside a -drive option: qemu reads ",," as a comma."""
    return path.replace(',', ',,')


def firmware_of(properties):
    """'ovmf' or 'seabios', as Nova chooses from ``hw_firmware_type``."""
    kind = properties.get('hw_firmware_type', 'bios')
    if kind not in ('uefi', 'bios'):
        raise MachineError('hw_firmware_type=%r: Nova knows uefi and bios'
                           % kind)
    return 'ovmf' if kind == 'uefi' else 'seabios'


def disk_devices(properties, drive_id):
    """The -device arguments that attach the drive on ``hw_disk_bus``."""
    bus = properties.get('hw_disk_bus', 'virtio')
    if bus == 'virtio':
        return ['-device', 'virtio-blk-pci,drive=%s,bootindex=0' % drive_id]
    if bus == 'ide':
        return ['-device', 'ide-hd,drive=%s,bus=ide.0,bootindex=0'
                % drive_id]
    if bus == 'sata':
        return ['-device', 'ahci,id=sata0',
                '-device', 'ide-hd,drive=%s,bus=sata0.0,bootindex=0'
                % drive_id]
    if bus == 'scsi':
        model = properties.get('hw_scsi_model')
        controller = ('virtio-scsi-pci' if model == 'virtio-scsi'
                      else 'lsi53c895a')
        return ['-device', '%s,id=scsi0' % controller,
                '-device', 'scsi-hd,drive=%s,bus=scsi0.0,bootindex=0'
                % drive_id]
    raise MachineError('hw_disk_bus=%r is not one the harness attaches'
                       % bus)


@dataclasses.dataclass
class Boot:
    """How a boot ended, and what was said on the way."""
    outcome: str
    firmware: str
    #: The first serial port, and the firmware's debug port (0x402),
    #: terminal escapes removed.
    serial: str
    debug: str
    #: The text that decided the outcome (the line, the failure text).
    evidence: str = ''
    command: tuple = ()
    stderr: str = ''

    @property
    def booted(self):
        return self.outcome == BOOTED

    @property
    def console(self):
        return self.serial + self.debug

    def explain(self):
        return ('%s with %s (%s)\ncommand: %s\nserial (tail):\n%s\n'
                'firmware debug port (tail):\n%s%s'
                % (self.outcome, self.firmware, self.evidence,
                   ' '.join(self.command), self.serial[-1500:],
                   self.debug[-600:], '\nqemu stderr: %s' % self.stderr
                   if self.stderr else ''))


class Machine:
    """One qemu-system-x86_64 process, started and always reaped.

    ``disk`` is the stored image, ``disk_format`` its Glance format; the
    image is opened with ``snapshot=on``, so the guest never changes it.
    """

    def __init__(self, disk, disk_format, properties, workdir,
                 memory_mib=256):
        self.disk = os.fspath(disk)
        self.disk_format = disk_format
        self.properties = dict(properties)
        self.workdir = os.fspath(workdir)
        self.memory_mib = memory_mib
        self.firmware = firmware_of(self.properties)
        self.serial_log = os.path.join(self.workdir, 'serial.log')
        self.firmware_log = os.path.join(self.workdir, 'firmware.log')
        self.stderr_log = os.path.join(self.workdir, 'qemu.stderr')
        self.proc = None

    def command(self):
        machine = self.properties.get('hw_machine_type', DEFAULT_MACHINE)
        cmd = [QEMU, '-nodefaults', '-nographic', '-no-reboot',
               '-accel', 'tcg', '-machine', machine,
               '-m', str(self.memory_mib),
               '-serial', 'file:%s' % self.serial_log,
               '-chardev', 'file,id=fwlog,path=%s' % self.firmware_log,
               '-device', 'isa-debugcon,iobase=0x402,chardev=fwlog']
        if self.firmware == 'ovmf':
            # The code read-only, the variables in a copy of their own,
            # as libvirt gives each instance its NVRAM file.
            vars_copy = os.path.join(self.workdir, 'OVMF_VARS.fd')
            shutil.copyfile(OVMF_VARS, vars_copy)
            cmd += ['-drive', 'if=pflash,format=raw,unit=0,readonly=on,'
                    'file=%s' % OVMF_CODE,
                    '-drive', 'if=pflash,format=raw,unit=1,file=%s'
                    % _quoted(vars_copy)]
        else:
            cmd += ['-bios', SEABIOS]
        cmd += ['-drive', 'if=none,id=disk0,snapshot=on,format=%s,file=%s'
                % (formats.qemu_driver(self.disk_format),
                   _quoted(self.disk))]
        cmd += disk_devices(self.properties, 'disk0')
        return cmd

    def start(self):
        absent = missing()
        if absent:
            raise MachineError('cannot boot images: missing %s; install '
                               'them (bindep -b test)' % ', '.join(absent))
        os.makedirs(self.workdir, exist_ok=True)
        cmd = self.command()
        with open(self.stderr_log, 'wb') as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err, start_new_session=True)
        _RUNNING.add(self)
        self._cmd = tuple(cmd)

    def output(self):
        """(serial port, firmware debug port), escapes removed."""
        texts = []
        for path in (self.serial_log, self.firmware_log):
            try:
                with open(path, 'rb') as f:
                    text = f.read().decode('utf-8', 'replace')
            except FileNotFoundError:
                text = ''
            texts.append(_ESCAPES.sub('', text).replace('\r', ''))
        return tuple(texts)

    def stderr(self):
        try:
            with open(self.stderr_log, errors='replace') as f:
                return f.read().strip()
        except FileNotFoundError:
            return ''

    def stop(self):
        """Kill the machine (its own process group) and reap it."""
        localglance.stop_process(self.proc, term_timeout=10)
        _RUNNING.discard(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait(self, line, boot_timeout=BOOT_TIMEOUT,
             handover_timeout=HANDOVER_TIMEOUT, interval=0.2):
        """Watch the console until ``line`` shows or the boot has ended.

        Both limits are time-outs, not measurements: the outcome is read
        from what the firmware and the guest say.
        """
        deadline = time.monotonic() + boot_timeout
        handed_over = None
        while True:
            output = self.output()
            outcome, evidence = self._judge(output, line)
            if outcome is None and self.proc.poll() is not None:
                # Read once more: the last words may have come with exit.
                output = self.output()
                outcome, evidence = self._judge(output, line)
                if outcome is None:
                    outcome, evidence = EXITED, 'exit status %s' % (
                        self.proc.returncode)
            if outcome is None and handed_over is None and any(
                    t in ''.join(output)
                    for t in HANDOVER_TEXT[self.firmware]):
                handed_over = time.monotonic()
            now = time.monotonic()
            if outcome is None and handed_over is not None and (
                    now > handed_over + handover_timeout):
                outcome, evidence = SILENT, (
                    'no line %ss after the hand-over' % handover_timeout)
            if outcome is None and handed_over is None and now > deadline:
                outcome, evidence = TIMED_OUT, (
                    'no hand-over in %ss' % boot_timeout)
            if outcome is not None:
                return Boot(outcome, self.firmware, *output,
                            evidence=evidence, command=self._cmd,
                            stderr=self.stderr())
            time.sleep(interval)

    def _judge(self, output, line):
        serial, debug = output
        # The guest writes only to the serial port.
        if line in serial:
            return BOOTED, line
        for text in FAILURE_TEXT[self.firmware]:
            if text in serial or text in debug:
                return NO_BOOT_DEVICE, text
        return None, ''


def boot(disk, disk_format, properties, workdir, line, **wait_args):
    """Boot ``disk`` as Nova would with ``properties``; wait for ``line``.

    Returns a :class:`Boot`; the machine is gone when this returns, even
    if waiting failed.
    """
    with Machine(disk, disk_format, properties, workdir) as machine:
        return machine.wait(line, **wait_args)
