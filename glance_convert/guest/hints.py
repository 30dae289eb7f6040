"""What an appliance's metadata says about its guest.

An OVF (VMware's or VirtualBox's dialect) and a VMDK descriptor name the
guest's firmware, OS and virtual hardware; the disk itself may say more
or say otherwise.  Each reader returns one :class:`Hints`; the guest
decision weighs them against what is read from the disk.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Hints:
    #: Where these came from, for the record property: "ovf (VMware)",
    #: "ovf (VirtualBox)", "vmdk descriptor".
    source: str
    #: 'uefi' or 'bios'.
    firmware: str | None = None
    #: 'windows' or 'linux' (Nova's and Glance's os_type values).
    os_type: str | None = None
    #: Glance's documented os_distro value, where the metadata names one.
    os_distro: str | None = None
    os_version: str | None = None
    #: The source hypervisor's disk controller: 'ide', 'sata', 'scsi',
    #: 'nvme' (a VMDK's ddb.adapterType, an OVF's controller item).
    disk_controller: str | None = None
    #: The source hypervisor's NIC model: 'e1000', 'e1000e', 'vmxnet3',
    #: 'pcnet', 'virtio', ...
    nic_model: str | None = None
    #: What the metadata said, verbatim, for the record (e.g.
    #: "vmw:osType=windows2019srv_64Guest").
    said: tuple[str, ...] = ()
    #: The disk controller's model, in the words of Nova's hw_scsi_model
    #: where it has one ('lsilogic', 'lsisas1068', 'buslogic', 'vmpvscsi',
    #: 'virtio-scsi'): a Windows guest without virtio drivers boots from
    #: the controller it was installed on.
    disk_model: str | None = None


def combined(*found: Hints | None) -> Hints | None:
    """One :class:`Hints` from several sources, the first that answers
    each field winning (an OVF before the descriptor of its disk)."""
    found = [h for h in found if h is not None]
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    values = {}
    for field in dataclasses.fields(Hints):
        if field.name in ('source', 'said'):
            continue
        values[field.name] = next(
            (getattr(h, field.name) for h in found
             if getattr(h, field.name) is not None), None)
    # The record names where the firmware and the OS came from: the
    # sources that gave one of those (a VMDK descriptor names neither).
    guest_fields = ('firmware', 'os_type', 'os_distro', 'os_version')
    named = [h.source for h in found
             if any(getattr(h, f) for f in guest_fields)]
    return Hints(source=', '.join(named or [found[0].source]),
                 said=tuple(s for h in found for s in h.said), **values)
