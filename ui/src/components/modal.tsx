import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

/**
 * A modal `<dialog>` (focus moves into it and stays there; Escape closes it), open while `open`.
 * `onClose` hears of every way it closes.
 */
export function Modal(props: {
  open: boolean;
  onClose: () => void;
  labelledBy: string;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={ref} onClose={props.onClose} aria-labelledby={props.labelledBy}>
      {props.open && props.children}
    </dialog>
  );
}
