import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

/**
 * A local HTTP receiver (a webhook endpoint, a plug-in's service) that records each request
 * and answers as `answer` says (when it resolves); closed when the test finishes.
 */
export async function receiver(
  answer: (req: IncomingMessage, body: string) => number | Promise<number>,
) {
  const requests: { headers: IncomingMessage['headers']; body: string; status: number }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', async () => {
      const status = await answer(req, body);
      requests.push({ headers: req.headers, body, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, requests };
}
