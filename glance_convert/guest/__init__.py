"""What decides how a converted guest boots.

Facts come from two places: the appliance's metadata (an OVF, a VMDK
descriptor; :mod:`.hints`) and the guest's own disk (its partition table,
filesystems and the files that name its OS).  From them the plugin sets
the image properties Nova reads, and only those the user left unset.
"""
