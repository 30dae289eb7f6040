"""Why each hostile case is hostile: a proof that runs, or a named reason.

A refusal test only shows that the plugin refuses an image.  It does not
show that the image would have hurt anyone had the plugin let it through.
Each hostile case of ``tests/hostile_corpus.py`` therefore names one
:class:`Proof` below, and ``tests/functional/pipeline/test_hostile_proofs.py``
runs the *unprotected* path (plain ``qemu-img``, no byte checks, no
sandbox) and shows what the proof says happens:

* the attacks: qemu-img reads a host file (the canary), reaches the
  network, or is made to write a disk far larger than allowed; or the
  bytes are another format than the one claimed, so the next reader
  (Nova, qemu) would take them for that format;
* the named reasons, where no attack on this qemu exists: qemu-img accepts
  without a word an image that is malformed or that Glance's rules forbid
  (only the check stands between it and the store), or qemu-img refuses
  it too (the check's value is the user's sentence, given before qemu's
  parser sees the bytes).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Proof:
    name: str
    attack: bool   # True: an attack shown to work unprotected
    says: str


READS_HOST_FILE = Proof(
    'reads-host-file', True,
    'unprotected, qemu-img opens the canary, a host file the image names')
REACHES_NETWORK = Proof(
    'reaches-network', True,
    'unprotected, qemu-img opens a network connection the image asks for')
EXHAUSTS = Proof(
    'exhausts-resources', True,
    'unprotected, qemu-img would write a disk larger than the limit allows')
CONFUSES_FORMAT = Proof(
    'confuses-format', True,
    "oslo.utils' format inspector (Glance's own) finds another format in "
    "the upload, or in what plain qemu-img makes of it, than the one "
    "claimed: the next reader would take the bytes for that format")
ACCEPTED_SILENTLY = Proof(
    'accepted-silently', False,
    'unprotected, qemu-img converts it without an error although it is '
    'malformed or against Glance\'s rules: only the check refuses it')
QEMU_REFUSES = Proof(
    'qemu-refuses', False,
    "qemu-img refuses it too, so there is no attack on this qemu; the "
    "check refuses it first, with the user's sentence, before qemu's "
    "parser sees the bytes")

PROOFS = {
    # Backing files and external data files (OSSA-2024-001, CVE-2024-32498)
    'qcow2_backing_absolute': READS_HOST_FILE,
    'qcow2_backing_relative': READS_HOST_FILE,
    'qcow2_backing_json_spec': READS_HOST_FILE,
    'qcow2_backing_nbd_url': REACHES_NETWORK,
    # Debian's qemu-utils has no curl driver: "Unknown protocol 'http'".
    'qcow2_backing_http_url': QEMU_REFUSES,
    'qcow2_v2_backing': READS_HOST_FILE,
    'qcow2_data_file_raw_on': READS_HOST_FILE,
    'qcow2_data_file_raw_off': READS_HOST_FILE,
    # Without the incompatible-feature bit qemu ignores the extension.
    'qcow2_data_file_extension_only': ACCEPTED_SILENTLY,
    # VMDK extents (OSSA-2023-002, CVE-2022-47951)
    'vmdk_text_descriptor_absolute_extent': READS_HOST_FILE,
    'vmdk_text_descriptor_relative_extent': READS_HOST_FILE,
    # qemu refuses monolithicSparse as a descriptor file's type.
    'vmdk_text_descriptor_claiming_monolithic_sparse': QEMU_REFUSES,
    'vmdk_embedded_descriptor_monolithic_flat': READS_HOST_FILE,
    'vmdk_embedded_descriptor_two_gb': READS_HOST_FILE,
    'vmdk_embedded_descriptor_vmfs': READS_HOST_FILE,
    'vmdk_create_type_streamoptimized': ACCEPTED_SILENTLY,
    'vmdk_create_type_STREAMOPTIMIZED': ACCEPTED_SILENTLY,
    'vmdk_monolithic_flat_descriptor': ACCEPTED_SILENTLY,
    # qemu reads only the sparse extent of a monolithicSparse file.
    'vmdk_sparse_with_second_extent': ACCEPTED_SILENTLY,
    'vmdk_differencing_parent_hint': READS_HOST_FILE,
    'vmdk_extent_size_disagrees_with_header': ACCEPTED_SILENTLY,
    # Differencing disks of the other formats
    'vhd_differencing': ACCEPTED_SILENTLY,
    'vdi_differencing': QEMU_REFUSES,
    'vdi_undo': ACCEPTED_SILENTLY,
    # qemu 7.2 does not open differencing VHDX or parent locators.
    'vhdx_differencing_parent_locator': QEMU_REFUSES,
    'vhdx_parent_locator_without_has_parent': QEMU_REFUSES,
    # VHDX structure
    'vhdx_log_needs_replay': QEMU_REFUSES,
    'vhdx_region_beyond_eof': ACCEPTED_SILENTLY,
    'vhdx_region_tables_differ': ACCEPTED_SILENTLY,
    'vhdx_metadata_item_outside_region': QEMU_REFUSES,
    'vhdx_unknown_required_region': QEMU_REFUSES,
    'vhdx_unknown_required_metadata': QEMU_REFUSES,
    'vhdx_virtual_size_beyond_bat': QEMU_REFUSES,
    'vhdx_region_table_bad_checksum': QEMU_REFUSES,
    'vhdx_headers_bad_checksum': QEMU_REFUSES,
    # Encryption: qemu wants a key it is never given.
    'qcow2_luks_encrypted': QEMU_REFUSES,
    'qcow2_aes_encrypted': QEMU_REFUSES,
    'luks_claimed_raw': CONFUSES_FORMAT,
    # Sizes
    'qcow2_virtual_size_2TiB': EXHAUSTS,
    'qcow2_compressed_expansion_bomb': EXHAUSTS,
    'qcow2_size_beyond_l1_table': QEMU_REFUSES,
    'vhd_footer_copies_disagree': ACCEPTED_SILENTLY,
    'vdi_size_disagrees_with_blocks': QEMU_REFUSES,
    # Damaged qcow2
    'qcow2_truncated': ACCEPTED_SILENTLY,
    'qcow2_l1_table_beyond_eof': ACCEPTED_SILENTLY,
    'qcow2_refcount_table_beyond_eof': ACCEPTED_SILENTLY,
    'qcow2_clusters_shared': ACCEPTED_SILENTLY,
    'qcow2_corrupt_bit': ACCEPTED_SILENTLY,
    'qcow2_unknown_incompatible_feature': QEMU_REFUSES,
    'qcow2_one_sector_header': ACCEPTED_SILENTLY,
    'qcow2_header_cut_short': QEMU_REFUSES,
    # Format claims
    'qcow2_claimed_raw': CONFUSES_FORMAT,
    'vmdk_claimed_qcow2': QEMU_REFUSES,
    'vhd_dynamic_claimed_raw': CONFUSES_FORMAT,
    'iso_claimed_raw': CONFUSES_FORMAT,
    'random_bytes_claimed_qcow2': QEMU_REFUSES,
    'zero_length_raw': ACCEPTED_SILENTLY,
    'zero_length_qcow2': QEMU_REFUSES,
    'qcow2_that_is_also_gpt': CONFUSES_FORMAT,
    'qcow2_that_is_also_iso': CONFUSES_FORMAT,
    'raw_mbr_invalid_boot_flag': ACCEPTED_SILENTLY,
    # The guest data is a qcow2 with a backing file: stored as raw, the
    # next reader that probes it opens the backing file.
    'qcow2_hiding_qcow2_with_backing_file': CONFUSES_FORMAT,
    # ploop (qemu: parallels).  qemu opens most malformed ploops and reads
    # zeros past the end; oslo.utils has no ploop inspector, so a ploop
    # shows as raw to it and confusion cannot be shown that way.
    'ploop_cluster_beyond_eof': ACCEPTED_SILENTLY,
    'ploop_clusters_shared': ACCEPTED_SILENTLY,
    'ploop_cluster_in_header': ACCEPTED_SILENTLY,
    'ploop_size_beyond_bat': ACCEPTED_SILENTLY,
    'ploop_bat_smaller_than_size': ACCEPTED_SILENTLY,
    'ploop_old_header_size_high_bits': ACCEPTED_SILENTLY,
    'ploop_bat_beyond_eof': ACCEPTED_SILENTLY,
    'ploop_data_area_beyond_eof': ACCEPTED_SILENTLY,
    'ploop_extension_beyond_eof': QEMU_REFUSES,
    'ploop_in_use': ACCEPTED_SILENTLY,
    'ploop_zero_cluster_size': QEMU_REFUSES,
    'ploop_claimed_raw': ACCEPTED_SILENTLY,
    'ploop_claimed_qcow2': QEMU_REFUSES,
    'qcow2_claimed_ploop': QEMU_REFUSES,
    'random_bytes_claimed_ploop': QEMU_REFUSES,
    'qcow2_hiding_ploop': ACCEPTED_SILENTLY,
}
