"""The example alert rules and Grafana dashboard under etc/: valid
PromQL (promtool, from Debian's prometheus, when installed), metrics that
exist, and what Grafana needs to load a dashboard."""

import json
import os
import re
import shutil
import subprocess

import pytest

from glance_convert import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ALERTS = os.path.join(ROOT, 'etc', 'prometheus', 'glance-convert-alerts.yml')
DASHBOARD = os.path.join(ROOT, 'etc', 'grafana',
                         'glance-convert-dashboard.json')
#: Names a metric exposes: histograms add _bucket, _sum and _count.
EXPOSED = {m.full_name + suffix for m in metrics.METRICS
           for suffix in (('_bucket', '_sum', '_count')
                          if m.kind == 'histogram' else ('',))}
GRAFANA_VARIABLES = {'$__rate_interval': '1m', '$__range': '1h',
                     '$job': '.*', '$instance': '.*'}


def promtool():
    path = shutil.which('promtool')
    if not path:
        pytest.skip('promtool not installed (Debian: prometheus)')
    return path


def check_rules(path):
    return subprocess.run([promtool(), 'check', 'rules', str(path)],
                          capture_output=True, text=True, timeout=60)


def used_metrics(expr):
    return set(re.findall(r'\bglance_convert_[a-z_]+', expr))


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_exprs():
    for panel in load_dashboard()['panels']:
        for target in panel['targets']:
            expr = target['expr']
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            yield panel['title'], expr


def test_alert_rules_pass_promtool():
    result = check_rules(ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'SUCCESS: 4 rules found' in result.stdout


def test_promtool_finds_a_broken_rule(tmp_path):
    broken = tmp_path / 'broken.yml'
    with open(ALERTS) as f:
        broken.write_text(f.read().replace(
            'increase(glance_convert_refusals_total[15m])',
            'increase(glance_convert_refusals_total[15m)'))
    assert check_rules(broken).returncode != 0


def test_alerts_cover_the_issue_s_cases_with_existing_metrics():
    with open(ALERTS) as f:
        text = f.read()
    names = set(re.findall(r'alert: (\w+)', text))
    assert {'GlanceConvertRefusalSpike', 'GlanceConvertSlotsSaturated',
            'GlanceConvertSandboxMissing'} <= names
    exprs = re.findall(r'expr: (.*(?:\n {10}.*)*)', text)
    assert len(exprs) == len(names)
    for expr in exprs:
        assert used_metrics(expr) and used_metrics(expr) <= EXPOSED, expr


def test_dashboard_has_what_grafana_needs():
    board = load_dashboard()
    assert board['title'] and board['uid'] and board['schemaVersion']
    variables = {v['name'] for v in board['templating']['list']}
    assert {'datasource', 'job', 'instance'} <= variables
    ids = [p['id'] for p in board['panels']]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int)
                                             for i in ids)
    cells = set()
    for panel in board['panels']:
        assert panel['type'] in ('timeseries', 'stat'), panel['title']
        assert panel['datasource'] == {'type': 'prometheus',
                                       'uid': '${datasource}'}
        pos = panel['gridPos']
        assert set(pos) == {'h', 'w', 'x', 'y'}
        assert all(isinstance(v, int) and v >= 0 for v in pos.values())
        assert pos['w'] > 0 and pos['h'] > 0 and pos['x'] + pos['w'] <= 24
        mine = {(x, y) for x in range(pos['x'], pos['x'] + pos['w'])
                for y in range(pos['y'], pos['y'] + pos['h'])}
        assert not cells & mine, '%s overlaps another panel' % panel['title']
        cells |= mine
        refs = [t['refId'] for t in panel['targets']]
        assert refs and len(refs) == len(set(refs)), panel['title']


def test_dashboard_shows_every_recorded_metric():
    used = set()
    for _, expr in dashboard_exprs():
        assert used_metrics(expr) <= EXPOSED, expr
        used |= used_metrics(expr)
    shown = {m for m in EXPOSED if m in used or m + '_bucket' in used}
    assert {re.sub(r'_(bucket|sum|count)$', '', m) for m in used} >= {
        m.full_name for m in metrics.METRICS}, shown


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses them as recording rules."""
    rules = tmp_path / 'dashboard-rules.yml'
    exprs = [expr for _, expr in dashboard_exprs()]
    rules.write_text(json.dumps({'groups': [{'name': 'dashboard', 'rules': [
        {'record': 'dashboard:query%d' % i, 'expr': e}
        for i, e in enumerate(exprs)]}]}))
    result = check_rules(rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'SUCCESS: %d rules found' % len(exprs) in result.stdout
