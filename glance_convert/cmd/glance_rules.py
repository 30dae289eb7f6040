"""Glance's settings that undo the plugin or make it costly.

``check-config`` reports these beside its own checks.  Each is a setting of
Glance's, not of the plugin's, so the plugin cannot correct it: a user who
may upload image data directly bypasses every import plugin; a store that
is not thin-provisioned writes every zero of a raw image; a size cap below
the plugin's limit refuses a raw image after the whole conversion; a format
list that lacks what the plugin makes or accepts refuses those images.
"""

from __future__ import annotations

import os

import yaml

from glance_convert import options
from glance_convert import units
from glance_convert.flow import glance_conf
from glance_convert.flow.settings import ERROR
from glance_convert.flow.settings import Finding
from glance_convert.flow.settings import OK
from glance_convert.flow.settings import WARNING

#: ``upload_image`` rules that let no project member upload image data.
CLOSED_RULES = ('!', 'role:admin', 'rule:context_is_admin',
                'rule:admin_only', 'is_admin:True')


def check_glance_rules(conf, config_dir: str) -> list[Finding]:
    return (check_upload_policy(conf, config_dir)
            + check_thin_provisioning(conf)
            + check_size_cap(conf)
            + check_formats(conf))


def _policy_rule(conf, config_dir: str, name: str) -> tuple[str | None, str]:
    """(the rule for ``name`` in Glance's policy file or None, the file)."""
    policy_file = glance_conf.glance_setting('oslo_policy', 'policy_file',
                                             conf)
    path = policy_file if os.path.isabs(policy_file) else os.path.join(
        config_dir, policy_file)
    try:
        with open(path) as f:
            rules = yaml.safe_load(f) or {}
    except FileNotFoundError:
        return None, path
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError('%s cannot be read: %s' % (path, exc))
    rule = rules.get(name) if isinstance(rules, dict) else None
    return (None if rule is None else str(rule).strip()), path


def check_upload_policy(conf, config_dir: str) -> list[Finding]:
    """Image data uploaded with ``PUT /v2/images/{id}/file`` bypasses every
    import plugin, so users who convert through imports must not have it.
    """
    fix = ('set "upload_image": "role:admin" in %s (Glance\'s own docs ask '
           'this of clouds that convert on import), so that users import '
           'instead.')
    try:
        rule, path = _policy_rule(conf, config_dir, 'upload_image')
    except ValueError as exc:
        return [Finding(ERROR, 'upload_policy', str(exc),
                        'correct the policy file.')]
    if rule is not None and rule in CLOSED_RULES:
        return [Finding(OK, 'upload_policy', 'upload_image is "%s" in %s: '
                        'users cannot bypass the import plugins.'
                        % (rule, path))]
    said = ('is "%s" in %s' % (rule, path) if rule is not None else
            'is Glance\'s default (project members) in %s' % path)
    return [Finding(WARNING, 'upload_policy',
                    'upload_image %s: users can upload image data with PUT '
                    '/v2/images/{id}/file, which no import plugin sees, so '
                    'their images are neither checked nor converted.'
                    % said, fix % path)]


def check_thin_provisioning(conf) -> list[Finding]:
    """A sparse raw image written in full to a thick store."""
    if conf[options.GROUP].output_format != 'raw':
        return []
    found = []
    for group, driver in glance_conf.stores(conf):
        option = glance_conf.THIN_PROVISIONING.get(driver)
        if option is None:
            continue
        if glance_conf.store_flag(group, option, conf):
            found.append(Finding(OK, 'thin_provisioning', 'Store [%s] (%s) '
                                 'skips the zeros of raw images.'
                                 % (group, driver)))
        else:
            found.append(Finding(
                WARNING, 'thin_provisioning',
                'Store [%s] (%s) writes every zero byte of a raw image: a '
                '10 GiB cloud image holding 1 GiB of data takes 10 GiB and '
                'the time to write it.' % (group, driver),
                'set [%s] %s = True.' % (group, option)))
    return found


def check_size_cap(conf) -> list[Finding]:
    """The plugin's limit against Glance's ``image_size_cap``."""
    cap = glance_conf.glance_setting(None, 'image_size_cap', conf)
    limit = glance_conf.max_virtual_size(conf)
    target = conf[options.GROUP].output_format
    if limit <= cap:
        return [Finding(OK, 'image_size_cap', 'Images up to %s are '
                        'converted; Glance stores up to %s.'
                        % (units.human_size(limit), units.human_size(cap)))]
    return [Finding(
        WARNING, 'image_size_cap',
        '[glance_convert] max_virtual_size (%s) is above Glance\'s '
        'image_size_cap (%s): a %s image larger than the cap is converted '
        'in full and then refused by Glance at upload.'
        % (units.human_size(limit), units.human_size(cap), target),
        'lower max_virtual_size to at most %d or raise image_size_cap.'
        % cap)]


def check_formats(conf) -> list[Finding]:
    """What the plugin accepts or makes, against what Glance allows."""
    group = conf[options.GROUP]
    found = []
    disk_formats = glance_conf.glance_setting('image_format', 'disk_formats',
                                              conf)
    containers = glance_conf.glance_setting('image_format',
                                            'container_formats', conf)
    unusable = [f for f in group.source_formats if f not in disk_formats]
    if unusable:
        found.append(Finding(
            WARNING, 'image_format',
            'source_formats names %s, which Glance\'s [image_format] '
            'disk_formats does not allow: no such image can be created, so '
            'the plugin never converts one.' % ', '.join(unusable),
            'add them to disk_formats, or remove them from source_formats.'))
    if 'bare' not in containers:
        found.append(Finding(
            ERROR, 'image_format',
            'Glance\'s [image_format] container_formats lacks bare, the '
            'container of every image the plugin converts or unpacks.',
            'add bare to container_formats.'))
    if not glance_conf.glance_setting('image_format',
                                      'require_image_format_match', conf):
        found.append(Finding(
            WARNING, 'image_format',
            'require_image_format_match = False: Glance stores data whose '
            'bytes are not its disk_format when it is uploaded directly, '
            'which this plugin never sees.',
            'set [image_format] require_image_format_match = True.'))
    if not found:
        found.append(Finding(OK, 'image_format', 'Glance allows every '
                             'format the plugin accepts (%s) and makes (%s).'
                             % (', '.join(group.source_formats),
                                group.output_format)))
    return found
