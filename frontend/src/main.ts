import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { browserDeps, Connection } from './lib/connection.svelte';
import { parseHealthParam } from './lib/fallback';
import { TargetsApi, type SessionStorageLike } from './lib/targets.svelte';
import { AlertingApi, InboxApi, type AlertingDeps } from './lib/alerting.svelte';

// Page parameters:
//   ?token=T          sent to the gateway on /ws and /api (when it is configured with a token)
//   ?health=URL,URL   extra health URLs to poll in fallback (also config.json: {"health": [...]})
// The feed is always this origin's /ws (no override, so a link cannot point the page, or its
// token, at another server).
const params = new URLSearchParams(location.search);
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

const conn = new Connection(
  {
    wsUrl,
    apiBase: '',
    token: params.get('token'),
    configuredHealth: parseHealthParam(location.search),
    configUrl: new URL('config.json', location.href).toString(),
  },
  browserDeps(),
);
conn.start();

// Operator actions: the operator token is pasted into the page (never a page parameter) and
// kept in this tab's sessionStorage.
let session: SessionStorageLike | null = null;
try {
  session = window.sessionStorage;
} catch {
  session = null;
}
const targets = new TargetsApi({ apiBase: '', viewerToken: params.get('token') }, { fetch: window.fetch.bind(window), session });
if (targets.hasToken) void targets.list();

// Silences and acks use the operator token the TargetsApi holds; the inbox needs none.
const alertingDeps: AlertingDeps = {
  fetch: window.fetch.bind(window),
  operatorToken: () => targets.operatorToken(),
  setInterval: (fn, ms) => window.setInterval(fn, ms),
  clearInterval: (h) => window.clearInterval(h as number),
};
const apiOpts = { apiBase: '', viewerToken: params.get('token') };
const alerting = new AlertingApi(apiOpts, alertingDeps);
const inbox = new InboxApi(apiOpts, alertingDeps);

const target = document.getElementById('app');
if (target === null) throw new Error('no #app element');
mount(App, { target, props: { conn, targets, alerting, inbox } });
