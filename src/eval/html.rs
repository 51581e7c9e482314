//! The self-contained HTML report: the table and an inline SVG plot of quality and
//! rerank latency against pool size. No scripts, no external files.

use std::fmt::Write;

use super::report::Report;

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// nDCG@k (solid, left axis) and p50 rerank latency (dashed, right axis) per pool,
/// one colour per reranker; Qdrant's nDCG as a grey line.
pub fn plot(r: &Report) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 380.0, 64.0, 72.0, 24.0, 48.0);
    let mut pools: Vec<usize> = r.configs.iter().filter_map(|c| c.pool).collect();
    pools.sort_unstable();
    pools.dedup();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    if pools.is_empty() {
        s.push_str(r#"<text x="20" y="40">no reranked configuration</text></svg>"#);
        return s;
    }
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x = |i: usize| {
        if pools.len() == 1 {
            left + pw / 2.0
        } else {
            left + pw * i as f64 / (pools.len() - 1) as f64
        }
    };
    let ndcgs = r.configs.iter().map(|c| c.metrics.ndcg);
    let (mut lo, mut hi) = ndcgs.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.1).max(0.01);
    lo = (lo - pad).max(0.0);
    hi = (hi + pad).min(1.0);
    let yq = |v: f64| top + ph * (1.0 - (v - lo) / (hi - lo));
    let lat_max = r
        .configs
        .iter()
        .filter_map(|c| c.rerank_latency.as_ref().map(|l| l.p50_ms))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let yl = |v: f64| top + ph * (1.0 - v / lat_max);
    // axes and grid
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for t in 0..=4 {
        let v = lo + (hi - lo) * f64::from(t) / 4.0;
        let y = yq(v);
        let lv = lat_max * f64::from(t) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text><text x="{}" y="{:.1}">{lv:.0} ms</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            left + pw + 6.0,
            y + 4.0
        );
    }
    for (i, p) in pools.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{p}</text>"#,
            x(i),
            top + ph + 18.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">pool size (candidates reranked)</text><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">nDCG@{k}</text><text x="{:.1}" y="{:.1}" transform="rotate(90 {:.1} {:.1})" text-anchor="middle">p50 rerank latency</text>"#,
        left + pw / 2.0,
        h - 8.0,
        top + ph / 2.0,
        top + ph / 2.0,
        w - 12.0,
        top + ph / 2.0,
        w - 12.0,
        top + ph / 2.0,
        k = r.k
    );
    if let Some(q) = r.configs.iter().find(|c| c.pool.is_none()) {
        let y = yq(q.metrics.ndcg);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#777" stroke-dasharray="2 3"/><text x="{}" y="{:.1}" fill="#555">{} {:.4}</text>"##,
            left + pw,
            left + 4.0,
            y - 4.0,
            esc(&q.name),
            q.metrics.ndcg
        );
    }
    let mut names: Vec<&String> = r
        .configs
        .iter()
        .filter_map(|c| c.reranker.as_ref())
        .collect();
    names.dedup();
    for (n, name) in names.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let rows: Vec<_> = r
            .configs
            .iter()
            .filter(|c| c.reranker.as_ref() == Some(*name))
            .filter_map(|c| Some((pools.iter().position(|p| Some(*p) == c.pool)?, c)))
            .collect();
        let quality: Vec<String> = rows
            .iter()
            .map(|(i, c)| format!("{:.1},{:.1}", x(*i), yq(c.metrics.ndcg)))
            .collect();
        let latency: Vec<String> = rows
            .iter()
            .filter_map(|(i, c)| {
                let l = c.rerank_latency.as_ref()?;
                Some(format!("{:.1},{:.1}", x(*i), yl(l.p50_ms)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/><polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
            quality.join(" "),
            latency.join(" ")
        );
        for p in &quality {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{color}"/>"#);
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{color}">— {name} nDCG@{k}, - - {name} p50 latency</text>"#,
            left + 8.0,
            top + 16.0 + 16.0 * n as f64,
            name = esc(name),
            k = r.k,
        );
    }
    s.push_str("</svg>");
    s
}

pub fn page(r: &Report) -> String {
    let k = r.k;
    let mut rows = String::new();
    for c in &r.configs {
        let m = &c.metrics;
        let (d, p, ci, wtl) = match &c.vs_qdrant {
            Some(v) => (
                format!("{:+.4}", v.delta_ndcg),
                format!("{:.4}", v.p_value),
                format!("[{:+.4}, {:+.4}]", v.ci95.0, v.ci95.1),
                format!("{}/{}/{}", v.wins, v.ties, v.losses),
            ),
            None => Default::default(),
        };
        let (p50, p95) = c
            .rerank_latency
            .as_ref()
            .map_or(("".into(), "".into()), |l| {
                (format!("{:.1}", l.p50_ms), format!("{:.1}", l.p95_ms))
            });
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{d}</td><td>{p}</td><td>{ci}</td><td>{wtl}</td><td>{p50}</td><td>{p95}</td><td>{}</td></tr>",
            esc(&c.name), m.ndcg, m.mrr, m.recall, m.map, c.not_reranked
        );
    }
    let recs: String = r
        .recommendations
        .iter()
        .map(|x| {
            format!(
                "<li><b>{}: pool {}</b> — {}</li>",
                esc(&x.reranker),
                x.pool,
                esc(&x.why)
            )
        })
        .collect();
    let recs = if recs.is_empty() {
        format!("<li>no pool beats Qdrant's order on nDCG@{k}</li>")
    } else {
        recs
    };
    let i = &r.input;
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>secondpass eval: {coll}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}small{{color:#555}}</style>
</head><body>
<h1>secondpass eval — {coll}</h1>
<p>{n} judged queries, k = {k}. Input: {qf} queries in the file, {nq} without judgements (skipped), {uq} qrels query ids not in the queries file, {up} judged point ids not in the collection.</p>
<h2>Which pool size?</h2><ul>{recs}</ul>
{svg}
<h2>All configurations</h2>
<table><tr><th>configuration</th><th>nDCG@{k}</th><th>MRR@{k}</th><th>Recall@{k}</th><th>MAP</th><th>ΔnDCG</th><th>p</th><th>95% CI</th><th>W/T/L</th><th>p50 ms</th><th>p95 ms</th><th>kept Qdrant's order</th></tr>
{rows}</table>
<p><small>nDCG: {variant}.<br>Test: {test}.<br>Latency: the rerank step alone (score cache off), per query.</small></p>
</body></html>
"#,
        coll = esc(&r.collection),
        n = r.queries,
        qf = i.queries_in_file,
        nq = i.queries_without_qrels,
        uq = i.qrels_unknown_queries,
        up = i.qrels_unknown_points,
        svg = plot(r),
        variant = r.ndcg,
        test = r.test,
    )
}
