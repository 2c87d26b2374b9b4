//! The overview page and its charts: SVG drawn on the server (no script, no external
//! resources). Labels are escaped like every other user-visible text.

use super::{Layout, html, signed_in};
use crate::AppState;
use askama::Template;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use firebreak_app::tickets::ListTickets;
use firebreak_domain::api::TicketView;
use firebreak_domain::ticket::{Criticality, TicketStatus};
use std::fmt::Write;

/// Open tickets read per status for the overview at most (the page says when there are more).
const SCAN: u32 = 500;

pub struct Card {
    pub label: String,
    pub value: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    l: Layout,
    cards: Vec<Card>,
    age_chart: String,
    events_chart: String,
    /// Weekly opened/closed with the time to resolve, top sources, top categories.
    trends: Option<(String, String, String)>,
    tickets: Vec<TicketView>,
}

/// Tickets opened and closed per week (grouped bars), with the mean time to resolve under each.
pub fn weeks_chart(weeks: &[firebreak_app::trends::Week]) -> String {
    let max = weeks
        .iter()
        .map(|w| w.opened.max(w.closed))
        .max()
        .unwrap_or(0)
        .max(1);
    let (left, col, h, bottom) = (36i64, 62i64, 205i64, 70i64);
    let w = left + col * weeks.len() as i64 + 10;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"Tickets opened and closed per week, with the mean times to acknowledge and to resolve\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\"><title>Tickets opened and closed per week</title>",
        h + 22,
        h + 22
    );
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"12\">{max}</text><text x=\"0\" y=\"{}\">0</text>",
        h - bottom
    );
    for (i, wk) in weeks.iter().enumerate() {
        let x = left + i as i64 * col + 6;
        for (j, (n, colour, what)) in [
            (wk.opened, "#0b5394", "opened"),
            (wk.closed, "#1e6b30", "closed"),
        ]
        .iter()
        .enumerate()
        {
            let bh = (*n as f64 / max as f64 * (h - bottom - 16) as f64).round() as i64;
            let bx = x + j as i64 * 24;
            let _ = write!(
                svg,
                "<rect x=\"{bx}\" y=\"{}\" width=\"22\" height=\"{}\" fill=\"{colour}\"><title>week of {}: {n} {what}</title></rect><text x=\"{bx}\" y=\"{}\">{n}</text>",
                h - bottom - bh,
                bh.max(1),
                wk.start,
                h - bottom - bh - 3
            );
        }
        let hours = |v: Option<f64>| {
            v.map(|m| {
                if m >= 48.0 {
                    format!("{:.1} d", m / 24.0)
                } else {
                    format!("{m:.1} h")
                }
            })
            .unwrap_or_else(|| "-".into())
        };
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{}\">{:02}-{:02}</text><text x=\"{x}\" y=\"{}\">{}</text><text x=\"{x}\" y=\"{}\">{}</text>",
            h - bottom + 15,
            u8::from(wk.start.month()),
            wk.start.day(),
            h - bottom + 31,
            hours(wk.mtta_hours),
            h - bottom + 46,
            hours(wk.mttr_hours)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\">MTTA</text><text x=\"0\" y=\"{}\">MTTR</text><rect x=\"{left}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#0b5394\"></rect><text x=\"{}\" y=\"{}\">opened</text><rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#1e6b30\"></rect><text x=\"{}\" y=\"{}\">closed (by week opened)</text>",
        h - bottom + 31,
        h - bottom + 46,
        h + 4,
        left + 14,
        h + 13,
        left + 80,
        h + 4,
        left + 94,
        h + 13
    );
    svg.push_str("</svg>");
    svg
}

fn esc(s: &str) -> String {
    crate::web::esc(s)
}

/// Horizontal bars, one per `(label, value)`, with the value written after the bar.
pub fn bars(title: &str, rows: &[(String, i64)], colour: &str) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let row_h = 22;
    let label_w = 130;
    let bar_w = 220;
    let h = rows.len() as i64 * row_h + 10;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {} {h}\" width=\"{}\" height=\"{h}\"><title>{}</title>",
        esc(title),
        label_w + bar_w + 60,
        label_w + bar_w + 60,
        esc(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = i as i64 * row_h + 5;
        let w = (*v as f64 / max as f64 * bar_w as f64).round() as i64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"></rect><text x=\"{}\" y=\"{}\">{v}</text>",
            y + 14,
            esc(label),
            w.max(1),
            row_h - 6,
            label_w + w + 6,
            y + 14
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Open tickets per age bucket, stacked by criticality.
pub fn age_chart(tickets: &[TicketView], now: time::OffsetDateTime) -> String {
    let buckets = ["< 1 day", "1-3 days", "3-7 days", "> 7 days"];
    let crits = [
        (Criticality::Normal, "#4f6d8f"),
        (Criticality::Escalation, "#8a4b00"),
        (Criticality::Emergency, "#8b0000"),
    ];
    let mut counts = [[0i64; 3]; 4];
    for t in tickets {
        let days = (now - t.created_at).whole_hours() as f64 / 24.0;
        let b = if days < 1.0 {
            0
        } else if days < 3.0 {
            1
        } else if days < 7.0 {
            2
        } else {
            3
        };
        let c = crits
            .iter()
            .position(|(c, _)| *c == t.criticality)
            .unwrap_or(0);
        counts[b][c] += 1;
    }
    let max = counts
        .iter()
        .map(|r| r.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (420i64, 200i64, 30i64, 40i64);
    let col = (w - left) / 4;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"Open tickets by age and criticality\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\"><title>Open tickets by age and criticality</title>",
        h + 30,
        h + 30
    );
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"12\">{max}</text><text x=\"0\" y=\"{}\">0</text>",
        h - bottom
    );
    for (i, b) in buckets.iter().enumerate() {
        let x = left + i as i64 * col + 10;
        let mut y = h - bottom;
        for (c, (crit, colour)) in crits.iter().enumerate() {
            let n = counts[i][c];
            if n == 0 {
                continue;
            }
            let bh = (n as f64 / max as f64 * (h - bottom - 10) as f64).round() as i64;
            y -= bh;
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{bh}\" fill=\"{colour}\"><title>{} {}: {n}</title></rect>",
                col - 20,
                b,
                crit
            );
        }
        let total: i64 = counts[i].iter().sum();
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{}\">{b}</text><text x=\"{x}\" y=\"{}\">{total}</text>",
            h - bottom + 16,
            y - 4
        );
    }
    for (i, (crit, colour)) in crits.iter().enumerate() {
        let x = left + i as i64 * 120;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"></rect><text x=\"{}\" y=\"{}\">{crit}</text>",
            h + 8,
            x + 14,
            h + 17
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `GET /` for a signed-in user.
pub async fn overview(s: &AppState, headers: &HeaderMap) -> Response {
    let ui = match signed_in(s, headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut open: Vec<TicketView> = Vec::new();
    let mut cards = Vec::new();
    for status in [
        TicketStatus::Open,
        TicketStatus::InProgress,
        TicketStatus::PendingClosure,
    ] {
        let page = s
            .app
            .list_tickets(
                &ui.p,
                &ListTickets {
                    status: Some(status),
                    limit: Some(SCAN),
                    ..Default::default()
                },
            )
            .await;
        let (items, more) = match page {
            Ok(p) => (p.items, p.next_cursor.is_some()),
            Err(_) => (vec![], false),
        };
        cards.push(Card {
            label: format!("{} tickets", status.as_str().replace('_', " ")),
            value: if more {
                format!("{}+", items.len())
            } else {
                items.len().to_string()
            },
            href: format!("/tickets?status={}", status.as_str()),
        });
        open.extend(items);
    }
    for (crit, label) in [
        (Criticality::Escalation, "open escalations"),
        (Criticality::Emergency, "open emergencies"),
    ] {
        let n = open.iter().filter(|t| t.criticality == crit).count();
        cards.push(Card {
            label: label.into(),
            value: n.to_string(),
            href: format!("/tickets?criticality={}", crit.as_str()),
        });
    }
    let counts = s.app.event_counts(&ui.p).await.unwrap_or_default();
    if let Some(n) = counts.get("new") {
        cards.insert(
            0,
            Card {
                label: "new events in the queue".into(),
                value: n.to_string(),
                href: "/events".into(),
            },
        );
    }
    let rows: Vec<(String, i64)> = counts.into_iter().collect();
    let trends = s.app.trends(&ui.p).await.ok().map(|t| {
        (
            weeks_chart(&t.weeks),
            bars("Top sources", &t.sources, "#4f6d8f"),
            bars("Top problem categories", &t.categories, "#8a4b00"),
        )
    });
    let now = s.app.now_utc();
    let age = age_chart(&open, now);
    open.sort_by_key(|t| std::cmp::Reverse(t.updated_at));
    open.truncate(10);
    html(
        StatusCode::OK,
        &OverviewPage {
            l: ui.layout("overview"),
            cards,
            age_chart: age,
            events_chart: bars("Events by status", &rows, "#0b5394"),
            trends,
            tickets: open,
        },
    )
}
