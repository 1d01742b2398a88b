import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { browserDeps, Connection } from './lib/connection.svelte';
import { parseHealthParam } from './lib/fallback';

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

const target = document.getElementById('app');
if (target === null) throw new Error('no #app element');
mount(App, { target, props: { conn } });
