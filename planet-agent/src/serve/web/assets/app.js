// Planet agent page: draws /api/v1/dependencies as a map (inline SVG) and as
// tables, and refreshes itself. Hand-written, no dependencies, served from
// the agent binary. Rates come from the API (computed by the agent from two
// flow drains), so one poll is enough to draw them.
'use strict';

(function () {
  const API = '/api/v1/dependencies';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const REFRESH_MS = 5000;

  // Layout of the map, in SVG user units.
  const W = 1000;
  const PEER_W = 270;
  const HOST_W = 200;
  const LEFT_X = 10;
  const RIGHT_X = W - 10 - PEER_W;
  const HOST_X = (W - HOST_W) / 2;
  const TOP = 44;
  const PEER_HEAD = 38;
  const SLOT_H = 32;
  const MAX_LISTENERS = 12;
  const GAP = 12;

  let timer = null;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function html(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatRate(bps) {
    if (bps === null || bps === undefined) return 'n/a';
    const units = ['B/s', 'kB/s', 'MB/s', 'GB/s', 'TB/s'];
    let value = bps;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    const digits = value >= 100 || unit === 0 ? 0 : 1;
    return value.toFixed(digits) + ' ' + units[unit];
  }

  // Stroke width grows with the log of the rate: 1 B/s is thin, 1 GB/s thick.
  function strokeWidth(bps) {
    if (!bps) return 1.5;
    return Math.min(18, 1.5 + 1.8 * Math.log10(1 + bps));
  }

  // Shortens `text` to `max` characters; the full text is in the titles and tables.
  function clip(text, max) {
    return text.length > max ? text.slice(0, max - 1) + '…' : text;
  }

  function edgeLabel(edge) {
    return ':' + edge.port + ' ' + edge.protocol + ' · ' + (edge.process_name || 'unknown process');
  }

  function rateLabel(edge) {
    const r = edge.bytes_per_second;
    if (!r) return 'bytes/s unavailable';
    return '↑' + formatRate(r.egress) + ' ↓' + formatRate(r.ingress);
  }

  // Groups edges by peer (address + hostgroup), keeping the API's order.
  function peersOf(edges) {
    const byKey = new Map();
    for (const edge of edges) {
      const key = edge.remote_address + '\u0000' + edge.remote_hostgroup;
      if (!byKey.has(key)) {
        byKey.set(key, { address: edge.remote_address, hostgroup: edge.remote_hostgroup, edges: [] });
      }
      byKey.get(key).edges.push(edge);
    }
    return Array.from(byKey.values());
  }

  function columnHeight(peers) {
    let h = 0;
    for (const p of peers) h += PEER_HEAD + SLOT_H * p.edges.length + GAP;
    return h;
  }

  // One column of peers; returns each edge's anchor on the peer box.
  function drawPeers(layer, peers, direction, x, top) {
    const anchors = [];
    let y = top;
    for (const peer of peers) {
      const h = PEER_HEAD + SLOT_H * peer.edges.length;
      const g = svg('g', {
        class: 'peer',
        'data-direction': direction,
        'data-address': peer.address,
        'data-hostgroup': peer.hostgroup,
      });
      g.appendChild(svg('title', {}, (direction === 'upstream' ? 'Upstream service ' : 'Downstream client ') +
        peer.address + (peer.hostgroup ? ' (hostgroup ' + peer.hostgroup + ')' : '')));
      g.appendChild(svg('rect', { class: 'box', x: x, y: y, width: PEER_W, height: h, rx: 6 }));
      g.appendChild(svg('text', { class: 'name', x: x + 10, y: y + 17 }, clip(peer.address, 36)));
      g.appendChild(svg('text', { class: 'group', x: x + 10, y: y + 31 },
        peer.hostgroup ? 'hostgroup ' + peer.hostgroup : 'not in the inventory'));
      peer.edges.forEach((edge, i) => {
        const sy = y + PEER_HEAD + SLOT_H * i + SLOT_H / 2;
        g.appendChild(svg('text', { class: 'slot', x: x + 10, y: sy - 2 }, clip(edgeLabel(edge), 40)));
        g.appendChild(svg('text', { class: 'slot rate', x: x + 10, y: sy + 11 }, rateLabel(edge)));
        anchors.push({ edge: edge, x: direction === 'upstream' ? x : x + PEER_W, y: sy });
      });
      layer.appendChild(g);
      y += h + GAP;
    }
    return anchors;
  }

  function curve(x1, y1, x2, y2) {
    const mx = (x1 + x2) / 2;
    return 'M' + x1 + ' ' + y1 + ' C' + mx + ' ' + y1 + ' ' + mx + ' ' + y2 + ' ' + x2 + ' ' + y2;
  }

  function drawEdges(layer, anchors, direction, hostX, hostTop, hostH) {
    anchors.forEach((anchor, i) => {
      const edge = anchor.edge;
      const hy = hostTop + (hostH * (i + 1)) / (anchors.length + 1);
      const r = edge.bytes_per_second;
      const g = svg('g', {
        class: 'edge',
        'data-direction': direction,
        'data-address': edge.remote_address,
        'data-hostgroup': edge.remote_hostgroup,
        'data-port': edge.port,
        'data-process': edge.process_name,
        'data-egress': r ? r.egress : '',
        'data-ingress': r ? r.ingress : '',
      });
      g.appendChild(svg('title', {}, direction + ' ' + edge.remote_address + ' ' + edgeLabel(edge) +
        (r ? ', sent ' + formatRate(r.egress) + ', received ' + formatRate(r.ingress) : ', no byte rates')));
      if (r && (r.egress > 0 || r.ingress > 0)) {
        const we = strokeWidth(r.egress);
        const wi = strokeWidth(r.ingress);
        const off = (we + wi) / 4 + 0.5;
        g.appendChild(svg('path', { class: 'egress', d: curve(hostX, hy - off, anchor.x, anchor.y - off), 'stroke-width': we }));
        g.appendChild(svg('path', { class: 'ingress', d: curve(hostX, hy + off, anchor.x, anchor.y + off), 'stroke-width': wi }));
      } else {
        g.appendChild(svg('path', { class: 'idle', d: curve(hostX, hy, anchor.x, anchor.y), 'stroke-width': 1.5 }));
      }
      layer.appendChild(g);
    });
  }

  function drawMap(data) {
    const up = peersOf(data.upstream);
    const down = peersOf(data.downstream);
    const listeners = data.listeners;
    const shown = listeners.slice(0, MAX_LISTENERS);
    const more = listeners.length - shown.length;
    const hostH = Math.max(90, 64 + 15 * (shown.length + (more > 0 ? 1 : 0)));
    const contentH = Math.max(columnHeight(up), columnHeight(down), hostH + GAP, 60);
    const height = TOP + contentH + 10;
    const hostTop = TOP + (contentH - GAP - hostH) / 2;

    const root = svg('svg', {
      viewBox: '0 0 ' + W + ' ' + height,
      role: 'img',
      'aria-labelledby': 'map-svg-title',
    });
    root.appendChild(svg('title', { id: 'map-svg-title' },
      'Dependency map: ' + down.length + ' downstream clients, this host, ' + up.length +
      ' upstream services. The tables below hold the same data.'));
    root.appendChild(svg('text', { class: 'column-title', x: LEFT_X, y: 24 }, 'Downstream clients'));
    root.appendChild(svg('text', { class: 'column-title', x: HOST_X, y: 24 }, 'This host'));
    root.appendChild(svg('text', { class: 'column-title', x: RIGHT_X, y: 24 }, 'Upstream services'));

    const edges = svg('g', { class: 'edges' });
    const nodes = svg('g', { class: 'nodes' });
    root.appendChild(edges);
    root.appendChild(nodes);

    const downAnchors = drawPeers(nodes, down, 'downstream', LEFT_X, TOP);
    const upAnchors = drawPeers(nodes, up, 'upstream', RIGHT_X, TOP);
    if (!down.length) {
      nodes.appendChild(svg('text', { class: 'empty', x: LEFT_X, y: TOP + 20 }, 'No downstream clients'));
    }
    if (!up.length) {
      nodes.appendChild(svg('text', { class: 'empty', x: RIGHT_X, y: TOP + 20 }, 'No upstream services'));
    }
    drawEdges(edges, downAnchors, 'downstream', HOST_X, hostTop, hostH);
    drawEdges(edges, upAnchors, 'upstream', HOST_X + HOST_W, hostTop, hostH);

    const host = data.host;
    const g = svg('g', { class: 'host', 'data-address': host.address, 'data-hostgroup': host.hostgroup });
    g.appendChild(svg('rect', { class: 'box', x: HOST_X, y: hostTop, width: HOST_W, height: hostH, rx: 6 }));
    g.appendChild(svg('text', { class: 'name', x: HOST_X + 12, y: hostTop + 22 }, host.address || host.hostname || 'this host'));
    g.appendChild(svg('text', { x: HOST_X + 12, y: hostTop + 39 },
      host.hostgroup ? 'hostgroup ' + host.hostgroup : 'not in the inventory'));
    g.appendChild(svg('text', { x: HOST_X + 12, y: hostTop + 55 },
      listeners.length ? 'Listening on:' : 'No listening sockets'));
    shown.forEach((l, i) => {
      g.appendChild(svg('text', {
        class: 'listener',
        'data-port': l.port,
        'data-process': l.process_name,
        x: HOST_X + 12,
        y: hostTop + 70 + 15 * i,
      }, clip(l.bind + '  ' + (l.process_name || 'unknown process'), 30)));
    });
    if (more > 0) {
      g.appendChild(svg('text', { class: 'listener', x: HOST_X + 12, y: hostTop + 70 + 15 * shown.length },
        '… and ' + more + ' more (see the table)'));
    }
    nodes.appendChild(g);

    const map = document.getElementById('map');
    map.replaceChildren(root);
  }

  function cell(tag, text, cls) {
    const c = html(tag, tag === 'th' ? { scope: 'row' } : {}, text);
    if (cls) c.className = cls;
    return c;
  }

  function rateCell(edge, way) {
    const r = edge.bytes_per_second;
    const c = cell('td', r ? formatRate(r[way]) : 'n/a', r ? 'num' : 'none');
    if (r) c.setAttribute('data-bps', r[way]);
    return c;
  }

  function fillEdges(id, edges, empty) {
    const body = document.querySelector('#' + id + ' tbody');
    const rows = edges.map((edge) => {
      const tr = html('tr', { 'data-address': edge.remote_address, 'data-port': edge.port });
      tr.append(
        cell('th', edge.remote_address),
        cell('td', edge.remote_hostgroup || '—'),
        cell('td', String(edge.port), 'num'),
        cell('td', edge.protocol),
        cell('td', edge.process_name || '—'),
        cell('td', edge.local_address),
        rateCell(edge, 'egress'),
        rateCell(edge, 'ingress'),
      );
      return tr;
    });
    if (!rows.length) {
      const tr = html('tr');
      const td = cell('td', empty, 'none');
      td.colSpan = 8;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function fillListeners(listeners) {
    const body = document.querySelector('#listeners-table tbody');
    const rows = listeners.map((l) => {
      const tr = html('tr', { 'data-bind': l.bind, 'data-port': l.port });
      tr.append(cell('th', l.bind), cell('td', String(l.port), 'num'), cell('td', l.process_name || '—'));
      return tr;
    });
    if (!rows.length) {
      const tr = html('tr');
      const td = cell('td', 'No listening sockets', 'none');
      td.colSpan = 3;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function setStatus(text, isError) {
    const status = document.getElementById('status');
    status.textContent = text;
    status.classList.toggle('error', Boolean(isError));
  }

  function render(data) {
    const host = data.host;
    document.getElementById('host-title').textContent = '· ' + (host.address || host.hostname || 'this host');
    document.getElementById('host-detail').textContent = [
      host.hostname && 'hostname ' + host.hostname,
      host.ip && 'IP ' + host.ip,
      host.hostgroup && 'hostgroup ' + host.hostgroup,
    ].filter(Boolean).join(' · ');
    drawMap(data);
    fillEdges('upstream-table', data.upstream, 'No upstream services');
    fillEdges('downstream-table', data.downstream, 'No downstream clients');
    fillListeners(data.listeners);
    const rates = data.rates.available
      ? 'rates over the last ' + data.rates.window_seconds.toFixed(1) + ' s'
      : 'no byte rates: ' + data.rates.reason;
    setStatus('Updated ' + new Date().toLocaleTimeString() + ' · ' + rates);
    document.body.dataset.state = 'ready';
    document.body.dataset.snapshot = String(data.snapshot);
  }

  async function refresh() {
    timer = null;
    try {
      const response = await fetch(API, { cache: 'no-store', headers: { Accept: 'application/json' } });
      if (!response.ok) throw new Error('HTTP ' + response.status);
      render(await response.json());
    } catch (err) {
      setStatus('Cannot update (' + err.message + '); showing the last data', true);
    }
    schedule();
  }

  function schedule() {
    if (timer === null && document.getElementById('live').checked) {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('every').textContent = String(REFRESH_MS / 1000);
    document.getElementById('live').addEventListener('change', (event) => {
      if (event.target.checked) {
        refresh();
      } else if (timer !== null) {
        clearTimeout(timer);
        timer = null;
      }
    });
    refresh();
  });
})();
