import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

// Django serves frontend/dist as a static directory, so file names must be
// stable (no content hashes): templates reference {% static 'arbiter/judge.js' %}.
export default defineConfig({
  base: '/static/',
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    manifest: false,
    target: 'es2020',
    sourcemap: false,
    rollupOptions: {
      input: {
        app: resolve(root, 'src/app.ts'),
        judge: resolve(root, 'src/judge.ts'),
        campaign: resolve(root, 'src/campaign.ts'),
        wizard: resolve(root, 'src/wizard.ts'),
        manage: resolve(root, 'src/manage.ts'),
        dashboard: resolve(root, 'src/dashboard.ts'),
        run: resolve(root, 'src/run.ts'),
      },
      output: {
        entryFileNames: 'arbiter/[name].js',
        chunkFileNames: 'arbiter/chunks/[name].js',
        assetFileNames: 'arbiter/[name][extname]',
      },
    },
  },
});
