#!/usr/bin/env python3
"""Writes dashboards/secondpass.json, the Grafana (10+) dashboard for secondpass.

    python3 dashboards/generate_dashboard.py

Edit the panels here rather than in the JSON: the chart tests
(integration-tests/python/test_helm_chart.py) check that the JSON matches this script,
and helm/check.py runs every panel query through `promtool check rules`.
The datasource is the ${DS_PROMETHEUS} input (import) / variable (provisioning).
"""
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "secondpass.json"

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
BASE = 'job=~"$job",namespace=~"$namespace"'
ROUTE = BASE + ',route=~"$route"'
SEARCH = ROUTE + ',route!="forward"'
COLL = BASE + ',collection=~"$collection"'
REQ = BASE + ',route=~"$route",collection=~"$collection"'
RI = "$__rate_interval"

panels = []
pid = [0]
y = [0]
x = [0]
rowh = [0]

def nid():
    pid[0] += 1
    return pid[0]

def row(title, collapsed=False):
    if x[0] != 0:
        y[0] += rowh[0]; x[0] = 0; rowh[0] = 0
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": collapsed,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1

def place(w, h):
    if x[0] + w > 24:
        y[0] += rowh[0]; x[0] = 0; rowh[0] = 0
    g = {"h": h, "w": w, "x": x[0], "y": y[0]}
    x[0] += w; rowh[0] = max(rowh[0], h)
    return g

def target(expr, legend, ref, **kw):
    t = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend, "range": True,
         "editorMode": "code"}
    t.update(kw)
    return t

def ts(title, desc, targets, unit, w=12, h=8, stack=False, minv=None, maxv=None, overrides=None):
    refs = "ABCDEFGH"
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if minv is not None: defaults["min"] = minv
    if maxv is not None: defaults["max"] = maxv
    panels.append({
        "type": "timeseries", "title": title, "description": desc, "id": nid(), "datasource": DS,
        "gridPos": place(w, h),
        "targets": [target(e, l, refs[i]) for i, (e, l) in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    })

def stat(title, desc, expr, unit, w=4, h=4, thresholds=None, mappings=None, decimals=None):
    defaults = {"unit": unit, "color": {"mode": "thresholds"},
                "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "green", "value": None}]}}
    if mappings: defaults["mappings"] = mappings
    if decimals is not None: defaults["decimals"] = decimals
    panels.append({
        "type": "stat", "title": title, "description": desc, "id": nid(), "datasource": DS,
        "gridPos": place(w, h),
        "targets": [target(expr, "", "A", instant=True, range=False)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                    "orientation": "auto", "textMode": "auto"},
    })

def heatmap(title, desc, expr, unit, w=12, h=8):
    panels.append({
        "type": "heatmap", "title": title, "description": desc, "id": nid(), "datasource": DS,
        "gridPos": place(w, h),
        "targets": [target(expr, "{{le}}", "A", format="heatmap")],
        "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
        "options": {"calculate": False, "yAxis": {"unit": unit, "axisPlacement": "left"},
                    "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                    "tooltip": {"mode": "single", "yHistogram": True}, "legend": {"show": True}},
    })

def quantiles(metric, sel, by=""):
    byc = f"le{', ' + by if by else ''}"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [(f'histogram_quantile({q}, sum by ({byc}) (rate({metric}_bucket{{{sel}}}[{RI}])))', f"p{int(q*100)}{suffix}")
            for q in (0.5, 0.95, 0.99)]

# ------------------------------------------------------------------ overview
row("Overview")
stat("Requests/s", "All requests through secondpass (selected routes and collections).",
     f'sum(rate(secondpass_requests_total{{{REQ}}}[{RI}]))', "reqps")
stat("Fail-open ratio", "Searches answered in Qdrant's order because reranking failed or timed out "
     "(secondpass_fail_open_total), relative to search requests.",
     f'sum(rate(secondpass_fail_open_total{{{COLL}}}[{RI}])) / sum(rate(secondpass_requests_total{{{REQ},route!="forward"}}[{RI}]))',
     "percentunit", thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.01},
                                {"color": "red", "value": 0.05}], decimals=2)
stat("p99 search latency", "p99 of secondpass_request_duration_seconds for search routes.",
     f'histogram_quantile(0.99, sum by (le) (rate(secondpass_request_duration_seconds_bucket{{{SEARCH}}}[{RI}])))',
     "s", thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.5}, {"color": "red", "value": 1}])
stat("Upstream errors/s", "Calls to Qdrant without an answer plus Qdrant's 5xx answers.",
     f'sum(rate(secondpass_upstream_errors_total{{{BASE}}}[{RI}])) + sum(rate(secondpass_upstream_responses_total{{{BASE},code="5xx"}}[{RI}]))',
     "reqps", thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.1}])
stat("Models loaded", "Pods reporting secondpass_model_loaded = 1 / pods reporting the metric.",
     f'sum(secondpass_model_loaded{{{BASE}}}) / count(secondpass_model_loaded{{{BASE}}})', "percentunit",
     thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}], decimals=0)
stat("Pods up", "Scrape targets up.", f'sum(up{{{BASE}}})', "none",
     thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}])

# ------------------------------------------------------------------ traffic
row("Traffic")
ts("Request rate by rerank status",
   "secondpass_requests_total by rerank_status: applied, failed_open, skipped, disabled, shadow, none (forwarded routes), error (secondpass answered an error, or Qdrant refused the rewritten search), cancelled (client went away).",
   [(f'sum by (rerank_status) (rate(secondpass_requests_total{{{REQ}}}[{RI}]))', "{{rerank_status}}")],
   "reqps", stack=True,
   overrides=[{"matcher": {"id": "byName", "options": n},
               "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}]}
              for n, c in (("applied", "green"), ("failed_open", "orange"), ("error", "red"),
                           ("skipped", "blue"), ("disabled", "purple"), ("none", "text"))])
ts("Fail-open rate",
   "Share of search requests answered in Qdrant's order (reranker failed or timed out), per collection.",
   [(f'sum by (collection) (rate(secondpass_fail_open_total{{{COLL}}}[{RI}])) / on (collection) '
     f'sum by (collection) (rate(secondpass_requests_total{{{REQ},route!="forward"}}[{RI}]))', "{{collection}}")],
   "percentunit", minv=0)
ts("Request rate by route", "secondpass_requests_total by route.",
   [(f'sum by (route) (rate(secondpass_requests_total{{{REQ}}}[{RI}]))', "{{route}}")], "reqps", w=12)
ts("Responses by status class", "secondpass_responses_total: answers sent to clients by status class.",
   [(f'sum by (code) (rate(secondpass_responses_total{{{BASE}}}[{RI}]))', "{{code}}")], "reqps", w=12, stack=True)

# ------------------------------------------------------------------ latency
row("Latency")
ts("Request latency (through the proxy)", "secondpass_request_duration_seconds: p50 / p95 / p99 of the selected routes.",
   quantiles("secondpass_request_duration_seconds", ROUTE), "s", w=8)
ts("Upstream latency (Qdrant)", "secondpass_upstream_duration_seconds: the (widened) call to Qdrant.",
   quantiles("secondpass_upstream_duration_seconds", ROUTE), "s", w=8)
ts("Rerank latency (model)", "secondpass_rerank_duration_seconds by reranker: tokenization and inference.",
   quantiles("secondpass_rerank_duration_seconds", BASE, by="reranker"), "s", w=8)

# ------------------------------------------------------------------ reranking
row("Reranking")
ts("Candidates per rerank", "secondpass_rerank_candidates: candidates scored per reranked search (mean and p95).",
   [(f'sum by (collection) (rate(secondpass_rerank_candidates_sum{{{COLL}}}[{RI}])) / '
     f'sum by (collection) (rate(secondpass_rerank_candidates_count{{{COLL}}}[{RI}]))', "mean {{collection}}"),
    (f'histogram_quantile(0.95, sum by (le, collection) (rate(secondpass_rerank_candidates_bucket{{{COLL}}}[{RI}])))',
     "p95 {{collection}}")], "none", w=8)
ts("Candidates without text", "secondpass_candidates_without_text_total: candidates lacking the configured text "
   "field (kept in Qdrant's order after the reranked ones). Usually a wrong text_field.",
   [(f'sum by (collection) (rate(secondpass_candidates_without_text_total{{{COLL}}}[{RI}]))', "{{collection}}")],
   "cps", w=8)
ts("Rerank errors by kind", "secondpass_rerank_errors_total by reranker and kind (timeout, overloaded, inference, ...).",
   [(f'sum by (reranker, kind) (rate(secondpass_rerank_errors_total{{{BASE}}}[{RI}]))', "{{reranker}} {{kind}}")],
   "cps", w=8, stack=True)

# ------------------------------------------------------------------ upstream
row("Upstream (Qdrant)")
ts("Upstream errors and 5xx", "secondpass_upstream_errors_total (no answer: connect, timeout, other) and Qdrant's "
   "5xx answers (secondpass_upstream_responses_total{code=\"5xx\"}).",
   [(f'sum by (kind) (rate(secondpass_upstream_errors_total{{{BASE}}}[{RI}]))', "no answer: {{kind}}"),
    (f'sum(rate(secondpass_upstream_responses_total{{{BASE},code="5xx"}}[{RI}]))', "5xx")], "reqps", w=12)
ts("Upstream responses by status class", "secondpass_upstream_responses_total by code.",
   [(f'sum by (code) (rate(secondpass_upstream_responses_total{{{BASE}}}[{RI}]))', "{{code}}")], "reqps", w=12, stack=True)
ts("Model loaded by pod", "secondpass_model_loaded: 1 when every reranker of the pod is loaded.",
   [(f'max by (pod) (secondpass_model_loaded{{{BASE}}})', "{{pod}}")], "none", w=24, h=6, minv=0, maxv=1)

# ------------------------------------------------------------------ new metrics
row("Quality and queueing")
ts("Rank displacement", "secondpass_rank_displacement: share of the returned top-k that was not in Qdrant's "
   "own top-k (0 = reranking changed nothing, 1 = entirely different results). Mean and p50/p95.",
   [(f'sum by (collection) (rate(secondpass_rank_displacement_sum{{{COLL}}}[{RI}])) / '
     f'sum by (collection) (rate(secondpass_rank_displacement_count{{{COLL}}}[{RI}]))', "mean {{collection}}"),
    (f'histogram_quantile(0.5, sum by (le) (rate(secondpass_rank_displacement_bucket{{{COLL}}}[{RI}])))', "p50"),
    (f'histogram_quantile(0.95, sum by (le) (rate(secondpass_rank_displacement_bucket{{{COLL}}}[{RI}])))', "p95")],
   "percentunit", w=12, minv=0, maxv=1)
heatmap("Rank displacement distribution", "secondpass_rank_displacement buckets over time.",
        f'sum by (le) (increase(secondpass_rank_displacement_bucket{{{COLL}}}[{RI}]))', "percentunit")
ts("Queue wait", "secondpass_queue_wait_seconds: time a rerank job waits for an inference worker.",
   quantiles("secondpass_queue_wait_seconds", BASE), "s", w=8)
ts("Inference batch size", "secondpass_batch_size: pairs per inference call (mean and p95).",
   [(f'sum(rate(secondpass_batch_size_sum{{{BASE}}}[{RI}])) / sum(rate(secondpass_batch_size_count{{{BASE}}}[{RI}]))', "mean"),
    (f'histogram_quantile(0.95, sum by (le) (rate(secondpass_batch_size_bucket{{{BASE}}}[{RI}])))', "p95")],
   "none", w=8)
ts("Fallbacks", "secondpass_fallback_total{from,to}: reranks served by a fallback reranker.",
   [(f'sum by (from, to) (rate(secondpass_fallback_total{{{BASE}}}[{RI}]))', "{{from}} → {{to}}")], "cps", w=8, stack=True)

ts("Model time split", "secondpass_tokenization_seconds (per job) and secondpass_inference_seconds (per batch), p95 by reranker.",
   [(f'histogram_quantile(0.95, sum by (le, reranker) (rate(secondpass_tokenization_seconds_bucket{{{BASE}}}[{RI}])))',
     "tokenize p95 {{reranker}}"),
    (f'histogram_quantile(0.95, sum by (le, reranker) (rate(secondpass_inference_seconds_bucket{{{BASE}}}[{RI}])))',
     "infer p95 {{reranker}}")], "s", w=8)
ts("Score cache hit ratio", "secondpass_cache_lookups_total{result=\"hit\"} / all lookups, per tier (memory: this "
   "process; redis: shared by the replicas, asked for what memory lacked; skipped lookups count as not hit).",
   [(f'sum by (tier) (rate(secondpass_cache_lookups_total{{{BASE},result="hit"}}[{RI}])) / '
     f'sum by (tier) (rate(secondpass_cache_lookups_total{{{BASE}}}[{RI}]))', "{{tier}}")], "percentunit", w=8, minv=0, maxv=1)
ts("Breakers and odd scores", "secondpass_breaker_state per hosted reranker (0 closed, 1 open, 2 half-open), "
   "non-finite model scores clamped (secondpass_nonfinite_scores_total) and configuration reloads by result.",
   [(f'max by (reranker) (secondpass_breaker_state{{{BASE}}})', "breaker {{reranker}}"),
    (f'sum(rate(secondpass_nonfinite_scores_total{{{BASE}}}[{RI}]))', "non-finite scores/s"),
    (f'sum by (result) (increase(secondpass_config_reloads_total{{{BASE}}}[{RI}]))', "reloads {{result}}")],
   "none", w=8)

# ------------------------------------------------------------------ cascades and long documents
row("Cascades and long documents")
ts("Stage latency", "secondpass_stage_duration_seconds: p95 of each stage of a staged rerank (stages = [...]).",
   [(f'histogram_quantile(0.95, sum by (le, collection, stage) (rate(secondpass_stage_duration_seconds_bucket{{{COLL}}}[{RI}])))',
     "p95 {{collection}} {{stage}}")], "s", w=8)
ts("Candidates per stage", "secondpass_stage_candidates: candidates each stage scored (mean); later stages see `keep` of the one before.",
   [(f'sum by (collection, stage) (rate(secondpass_stage_candidates_sum{{{COLL}}}[{RI}])) / '
     f'sum by (collection, stage) (rate(secondpass_stage_candidates_count{{{COLL}}}[{RI}]))', "{{collection}} {{stage}}")],
   "none", w=8)
ts("Stage outcomes", "secondpass_stage_outcomes_total by stage and status (applied, failed_open).",
   [(f'sum by (stage, status) (rate(secondpass_stage_outcomes_total{{{COLL}}}[{RI}]))', "{{stage}} {{status}}")],
   "cps", w=8, stack=True)
ts("Pairs scored", "secondpass_pairs_scored_total: (query, passage) pairs the local model scored, per reranker. "
   "Above the candidate rate when long_documents = chunk.",
   [(f'sum by (reranker) (rate(secondpass_pairs_scored_total{{{BASE}}}[{RI}]))', "{{reranker}}")], "cps", w=12)
ts("Passages per chunked document", "secondpass_passages_per_document: mean and p95 (long_documents = chunk).",
   [(f'sum by (reranker) (rate(secondpass_passages_per_document_sum{{{BASE}}}[{RI}])) / '
     f'sum by (reranker) (rate(secondpass_passages_per_document_count{{{BASE}}}[{RI}]))', "mean {{reranker}}"),
    (f'histogram_quantile(0.95, sum by (le, reranker) (rate(secondpass_passages_per_document_bucket{{{BASE}}}[{RI}])))',
     "p95 {{reranker}}")], "none", w=12)

# ------------------------------------------------------------------ shared score cache
row("Shared score cache (Redis)")
ts("Redis round trip", "secondpass_cache_redis_duration_seconds: one MGET per rerank batch (get), one pipeline "
   "of SETs (set); bounded by [cache.redis] timeout_ms.",
   quantiles("secondpass_cache_redis_duration_seconds", BASE, by="op"), "s", w=8)
ts("Redis errors", "secondpass_cache_redis_errors_total by op and kind (timeout, connection, server, protocol, "
   "backlog): searches go on without the shared tier.",
   [(f'sum by (op, kind) (rate(secondpass_cache_redis_errors_total{{{BASE}}}[{RI}]))', "{{op}} {{kind}}")],
   "cps", w=8, stack=True)
ts("Redis lookups", "secondpass_cache_lookups_total{tier=\"redis\"} by result: hit, miss, and skipped "
   "(Redis left alone for retry_ms after an error).",
   [(f'sum by (result) (rate(secondpass_cache_lookups_total{{{BASE},tier="redis"}}[{RI}]))', "{{result}}")],
   "cps", w=8, stack=True)

# ------------------------------------------------------------------ shadow mode
row("Shadow mode (collections with mode = \"shadow\")")
ts("Shadow searches", "secondpass_shadow_searches_total (compared), secondpass_shadow_dropped_total (queue full) and "
   "secondpass_shadow_failed_total (could not be compared).",
   [(f'sum(rate(secondpass_shadow_searches_total{{{COLL}}}[{RI}]))', "compared"),
    (f'sum(rate(secondpass_shadow_dropped_total{{{COLL}}}[{RI}]))', "dropped"),
    (f'sum(rate(secondpass_shadow_failed_total{{{COLL}}}[{RI}]))', "failed")], "cps", w=8)
ts("What reranking would change", "Share of compared searches whose first result would change "
   "(secondpass_shadow_top1_changed_total), mean overlap@k with Qdrant's page (secondpass_shadow_overlap) and "
   "mean rank displacement (secondpass_shadow_rank_displacement).",
   [(f'sum by (collection) (rate(secondpass_shadow_top1_changed_total{{{COLL}}}[{RI}])) / on (collection) '
     f'sum by (collection) (rate(secondpass_shadow_searches_total{{{COLL}}}[{RI}]))', "top-1 changed {{collection}}"),
    (f'sum by (collection) (rate(secondpass_shadow_overlap_sum{{{COLL}}}[{RI}])) / '
     f'sum by (collection) (rate(secondpass_shadow_overlap_count{{{COLL}}}[{RI}]))', "overlap@k {{collection}}"),
    (f'sum by (collection) (rate(secondpass_shadow_rank_displacement_sum{{{COLL}}}[{RI}])) / '
     f'sum by (collection) (rate(secondpass_shadow_rank_displacement_count{{{COLL}}}[{RI}]))', "displacement {{collection}}")],
   "percentunit", w=8, minv=0, maxv=1)
ts("Shadow rerank latency", "secondpass_shadow_rerank_duration_seconds: the background rerank step (what going live would add).",
   quantiles("secondpass_shadow_rerank_duration_seconds", COLL), "s", w=8)

def var(name, label, query, multi=True, include_all=True, all_value=".*"):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": include_all,
            "allValue": all_value, "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0, "regex": ""}

dashboard = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "Prometheus that scrapes secondpass's /metrics",
                  "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
        {"type": "panel", "id": "heatmap", "name": "Heatmap", "version": ""},
    ],
    "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                              "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                              "name": "Annotations & Alerts", "type": "dashboard"}]},
    "description": "secondpass, the reranking proxy for Qdrant: traffic, fail-open, latency, reranking and upstream health.",
    "editable": True,
    "fiscalYearStartMonth": 0,
    "graphTooltip": 1,
    "id": None,
    "links": [],
    "liveNow": False,
    "panels": panels,
    "refresh": "30s",
    "schemaVersion": 39,
    "tags": ["secondpass", "qdrant", "reranking"],
    "templating": {"list": [
        {"name": "DS_PROMETHEUS", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""},
        var("namespace", "Namespace", "label_values(secondpass_requests_total, namespace)"),
        var("job", "Job", 'label_values(secondpass_requests_total{namespace=~"$namespace"}, job)'),
        var("collection", "Collection", 'label_values(secondpass_requests_total{job=~"$job",namespace=~"$namespace"}, collection)'),
        var("route", "Route", 'label_values(secondpass_requests_total{job=~"$job",namespace=~"$namespace"}, route)'),
    ]},
    "time": {"from": "now-6h", "to": "now"},
    "timepicker": {},
    "timezone": "browser",
    "title": "secondpass",
    "uid": "secondpass",
    "version": 1,
    "weekStart": "",
}

def main():
    with open(OUT, "w") as f:
        json.dump(dashboard, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{OUT}: {len(panels)} panels")


if __name__ == "__main__":
    main()
