import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * The dashboard: a single-page app served by the JobQueue server at /ui (see
 * src/rpc/static-site.ts). `npm run build:ui` writes ui/dist; `npm ci` runs it (prepare). JSX is
 * compiled by Vite's built-in transform for Preact, so no framework plugin is needed.
 */
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/ui/",
  publicDir: "public",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    // Nothing inline: the server's Content-Security-Policy allows only files of its own.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    // `npx vite ui` for work on the dashboard: the API calls go to a server started beside it.
    proxy: {
      "/jobqueue.v1.JobQueueService": process.env.JOBQUEUE_SERVER ?? "http://127.0.0.1:8000",
      "/jobqueue.v1.QueueService": process.env.JOBQUEUE_SERVER ?? "http://127.0.0.1:8000",
    },
  },
});
