// One shared IntersectionObserver for every sparkline, so offscreen cards do not draw.

type Callback = (visible: boolean) => void;

let observer: IntersectionObserver | null = null;
const callbacks = new WeakMap<Element, Callback>();

/** Calls `cb` whenever `el` enters or leaves the viewport; returns the unsubscribe function.
 * Without IntersectionObserver (tests, old browsers) the element counts as always visible. */
export function observeVisibility(el: Element, cb: Callback): () => void {
  if (typeof IntersectionObserver === 'undefined') {
    cb(true);
    return () => {};
  }
  observer ??= new IntersectionObserver(
    (entries) => {
      for (const e of entries) callbacks.get(e.target)?.(e.isIntersecting);
    },
    { rootMargin: '200px' },
  );
  callbacks.set(el, cb);
  observer.observe(el);
  return () => {
    callbacks.delete(el);
    observer?.unobserve(el);
  };
}
