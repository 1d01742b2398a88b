/// <reference types="vitest/config" />
/// <reference types="node" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// The gateway that `/ws` and `/api` are proxied to, so the page is same-origin in dev and in
// `vite preview` alike. Override with GATEWAY_URL=http://host:port.
const gateway = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080';
const wsGateway = gateway.replace(/^http/, 'ws');

const proxy = {
  '/ws': { target: wsGateway, ws: true, changeOrigin: false },
  '/api': { target: gateway, changeOrigin: false },
};

export default defineConfig({
  plugins: [svelte()],
  // Relative asset paths, so dist/ works under any mount point of the gateway's --static-dir.
  base: './',
  server: { host: '127.0.0.1', port: 5173, strictPort: true, proxy },
  preview: { host: '127.0.0.1', port: 5173, strictPort: true, proxy },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: true },
  test: {
    projects: [
      {
        // Pure logic, the connection class with fakes, and a server render of the page.
        extends: true,
        test: { name: 'unit', include: ['src/**/*.test.ts'], exclude: ['src/**/*.dom.test.ts'], environment: 'node' },
      },
      {
        // The page mounted in a DOM (happy-dom): effects, events, focus. Svelte's browser build.
        extends: true,
        resolve: { conditions: ['browser'] },
        test: { name: 'dom', include: ['src/**/*.dom.test.ts'], environment: 'happy-dom' },
      },
    ],
  },
});
